"""A user's Google connection against the loopback fake: consent in a (simulated) browser,
import of an authorized-user file, 0600 storage, refresh and write-back, revoked consent, and
the ``gestan-bridge google`` commands, whose output must never hold a token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from bridge.cli import main as cli
from bridge.store import open_store
from bridge.targets.google_auth import (
    SCOPES,
    ConnectError,
    ReconnectNeeded,
    connect_installed_app,
    import_authorized_user,
    load_credentials,
    token_path,
)
from tests.conftest import sqlite_at_head
from tests.fakes.google_calendar import FakeGoogleCalendar

REAL_TOKEN_URI = "https://oauth2.googleapis.com/token"
REAL_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"
RECONNECT = "gestan-bridge google connect --user alice --client-secrets FILE"


# ------------------------------------------------------------------ fixtures
@pytest.fixture
def tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A token directory that does not exist yet (connecting must create it 0700)."""
    directory = tmp_path / "state" / "tokens"
    monkeypatch.setenv("GESTAN_BRIDGE_TOKEN_DIR", str(directory))
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    return directory


def _aim_at(fake: FakeGoogleCalendar, monkeypatch: pytest.MonkeyPatch) -> FakeGoogleCalendar:
    monkeypatch.setenv("GESTAN_BRIDGE_GOOGLE_TOKEN_URI", fake.token_uri)
    monkeypatch.setenv("GESTAN_BRIDGE_GOOGLE_AUTH_URI", fake.auth_uri)
    monkeypatch.setenv("GESTAN_BRIDGE_GOOGLE_API_URL", fake.api_url)
    return fake


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogleCalendar]:
    """The fake, reached only through the environment overrides."""
    with FakeGoogleCalendar() as running:
        yield _aim_at(running, monkeypatch)


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = sqlite_at_head(tmp_path / "gestan.db")
    open_store(url).add_user("alice", "pw", name="Alice Martin")
    return url


def authorized_user_file(fake: FakeGoogleCalendar, path: Path) -> Path:
    """An authorized-user JSON as google-auth writes it, aimed at Google's real endpoint
    (the environment override must send it to the fake)."""
    info = json.loads(fake.credentials().to_json())
    info["token_uri"] = REAL_TOKEN_URI
    info.pop("token", None)
    path.write_text(json.dumps(info))
    return path


def client_secrets_file(fake: FakeGoogleCalendar, path: Path) -> Path:
    config = fake.client_config()
    config["installed"].update(token_uri=REAL_TOKEN_URI, auth_uri=REAL_AUTH_URI)
    path.write_text(json.dumps(config))
    return path


def age(path: Path) -> None:
    """Let an hour pass for the stored access token (Google's live 3599 s)."""
    data = stored(path)
    data["expiry"] = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(json.dumps(data))


def stored(path: Path) -> dict:
    return json.loads(path.read_text())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def fetching_browser(visits: list[requests.Response]):
    """The user's browser: follows the consent page's redirect to our loopback server."""
    def browse(url: str) -> None:
        visits.append(requests.get(url, timeout=10))
    return browse


# ------------------------------------------------------------------ the library
def test_import_stores_0600_and_load_refreshes_and_writes_back(fake, tokens, tmp_path):
    imported = import_authorized_user("alice", authorized_user_file(fake, tmp_path / "au.json"))
    path = token_path("alice")
    assert path.parent == tokens and path.name == "alice.json"
    assert mode(path) == 0o600 and mode(tokens) == 0o700
    first = stored(path)
    assert first["token_uri"] == fake.token_uri                   # the override was applied
    assert first["refresh_token"] == fake.refresh_token
    assert first["account"] == "alice@example.com"                # looked up at connect
    assert first["token"] == imported.token and first["token"]    # checked with Google at once
    assert first["expiry"]                                        # or it would never refresh
    assert fake.token_request_count == 1
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ

    age(path)
    first = stored(path)

    credentials = load_credentials("alice")
    assert fake.token_request_count == 2                          # expired: refreshed
    assert credentials.valid and credentials.token != first["token"]
    second = stored(path)
    assert second["token"] == credentials.token                   # written back
    assert second["refresh_token"] == fake.refresh_token and second["expiry"] != first["expiry"]
    assert mode(path) == 0o600
    assert [p.name for p in tokens.iterdir()] == ["alice.json"]   # no temporary file left
    events = fake.build_service(credentials).events().list(calendarId="primary").execute()
    assert events["items"] == []                                   # the token works at the API


def test_valid_token_is_used_without_asking_google(fake, tokens, tmp_path):
    import_authorized_user("alice", authorized_user_file(fake, tmp_path / "au.json"))
    before = token_path("alice").stat().st_mtime_ns
    requests_before = fake.token_request_count
    credentials = load_credentials("alice")
    assert credentials.valid and credentials.scopes == SCOPES
    assert fake.token_request_count == requests_before
    assert token_path("alice").stat().st_mtime_ns == before


def test_installed_app_flow_end_to_end(fake, tokens, tmp_path):
    visits: list[requests.Response] = []
    prompts: list[str] = []
    credentials = connect_installed_app(
        "alice", client_secrets_file(fake, tmp_path / "client.json"),
        browser=fetching_browser(visits), prompt=prompts.append, timeout=10)

    [visit] = visits
    assert [r.status_code for r in visit.history] == [302]        # the fake's consent page
    consent = urllib.parse.urlsplit(visit.history[0].url)
    assert f"{consent.scheme}://{consent.netloc}{consent.path}" == fake.auth_uri
    query = urllib.parse.parse_qs(consent.query)
    assert query["scope"] == SCOPES and query["client_id"] == [fake.client_id]
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
    assert query["code_challenge_method"] == ["S256"] and query["prompt"] == ["consent"]
    assert visit.status_code == 200 and visit.url.startswith(query["redirect_uri"][0])
    assert "access granted" in visit.text
    assert visit.history[0].url in prompts[0]                      # the address was shown

    data = stored(token_path("alice"))
    assert data["refresh_token"].startswith("1//fake-")            # granted by this consent
    assert data["refresh_token"] == credentials.refresh_token != fake.refresh_token
    assert data["token_uri"] == fake.token_uri and data["account"] == "alice@example.com"
    assert mode(token_path("alice")) == 0o600 and mode(tokens) == 0o700
    loaded = load_credentials("alice")
    assert loaded.refresh_token == credentials.refresh_token
    assert fake.build_service(loaded).calendars().get(calendarId="primary").execute()["id"] \
        == "alice@example.com"
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ


def test_refused_or_forged_consent_stores_nothing(fake, tokens, tmp_path):
    def answering(**answer: str):
        """A browser that lands on redirect_uri with ``answer`` instead of asking Google."""
        def browse(url: str) -> None:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
            params = {k: v.format(state=query["state"][0]) for k, v in answer.items()}
            requests.get(query["redirect_uri"][0], params=params, timeout=10)
        return browse

    secrets_file = client_secrets_file(fake, tmp_path / "c.json")
    with pytest.raises(ConnectError, match="did not grant access \\(access_denied\\)"):
        connect_installed_app("alice", secrets_file, prompt=lambda _: None, timeout=10,
                              browser=answering(error="access_denied", state="{state}"))
    with pytest.raises(ConnectError, match="state mismatch"):
        connect_installed_app("alice", secrets_file, prompt=lambda _: None, timeout=10,
                              browser=answering(code="4/forged", state="not-ours"))
    with pytest.raises(ConnectError, match="no answer from the browser"):
        connect_installed_app("alice", secrets_file, browser=None, prompt=lambda _: None,
                              timeout=0.2)
    assert not token_path("alice").exists() and fake.token_request_count == 0


def test_revoked_consent_needs_reconnect_and_changes_nothing(fake, tokens, tmp_path):
    import_authorized_user("alice", authorized_user_file(fake, tmp_path / "au.json"))
    path = token_path("alice")
    age(path)
    content, mtime = path.read_bytes(), path.stat().st_mtime_ns
    fake.revoke()
    with pytest.raises(ReconnectNeeded) as refused:
        load_credentials("alice")
    message = str(refused.value)
    assert "Google refused alice's stored consent (invalid_grant: revoked or expired)" in message
    assert message.endswith(f"Reconnect with: {RECONNECT}")
    assert fake.refresh_token not in message
    assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime
    assert [p.name for p in tokens.iterdir()] == ["alice.json"]
    # importing a revoked file is refused and stores nothing for another user either
    with pytest.raises(ConnectError, match="refused the consent"):
        import_authorized_user("bob", tmp_path / "au.json")
    assert not token_path("bob").exists()


def test_missing_or_broken_token_needs_connect(tokens):
    with pytest.raises(ReconnectNeeded, match="alice has not connected a Google account: run "
                                              "gestan-bridge google connect --user alice"):
        load_credentials("alice")
    tokens.mkdir(parents=True)
    token_path("alice").write_text("{not json")
    with pytest.raises(ReconnectNeeded, match="unreadable.*Reconnect with"):
        load_credentials("alice")


def test_token_file_names_are_safe_and_distinct(tokens):
    names = {login: token_path(login) for login in ("../etc/x", "a/b", "a%2Fb", "é.dupont")}
    assert all(p.parent == tokens for p in names.values())
    assert len({p.name for p in names.values()}) == len(names)
    assert all("/" not in p.name for p in names.values())
    with pytest.raises(ValueError):
        token_path("")


# ------------------------------------------------------------------ the commands
@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """``main()`` in process, as the console script runs it."""

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


def assert_one_line_error(result: tuple[int, str, str], *needles: str,
                          quiet: bool = True) -> None:
    code, out, err = result
    assert code != 0 and (out == "" or not quiet)
    assert err.count("\n") == 1 and err.startswith("gestan-bridge: error: "), err
    for needle in needles:
        assert needle in err


def test_cli_refuses_bad_input_in_one_line(run_cli, fake, tokens, db, tmp_path):
    assert_one_line_error(run_cli("google", "connect", "--db", db, "--user", "alice",
                                  "--client-secrets", str(tmp_path / "missing.json")),
                          "cannot read client secrets file", "missing.json")
    (tmp_path / "not-secrets.json").write_text('{"type": "service_account"}')
    assert_one_line_error(run_cli("google", "connect", "--db", db, "--user", "alice",
                                  "--client-secrets", str(tmp_path / "not-secrets.json")),
                          "not an OAuth client secrets file")
    assert_one_line_error(run_cli("google", "connect", "--db", db, "--user", "alice"),
                          "--client-secrets", "--authorized-user-file")
    assert_one_line_error(run_cli("google", "status", "--db", db, "--user", "zoe"),
                          "no user 'zoe'")
    assert not tokens.exists()


def test_cli_import_status_check_disconnect_never_print_tokens(run_cli, fake, tokens, db,
                                                               tmp_path):
    outputs: list[str] = []

    def run(*args: str) -> tuple[int, str, str]:
        result = run_cli("google", *args, "--db", db, "--user", "alice")
        outputs.extend(result[1:])
        return result

    code, out, _ = run("status")
    assert code == 0 and "alice: not connected to Google" in out
    code, out, _ = run("connect", "--authorized-user-file",
                       str(authorized_user_file(fake, tmp_path / "au.json")))
    assert code == 0 and "alice@example.com connected" in out and str(tokens) in out
    assert open_store(db).user("alice").settings["google_account"] == "alice@example.com"
    code, out, _ = run("status", "--check")
    assert code == 0 and "connected to Google as alice@example.com" in out
    assert "accepts the stored consent" in out
    access_token = stored(token_path("alice"))["token"]

    fake.revoke()
    age(token_path("alice"))
    result = run("status", "--check")
    assert_one_line_error(result, "invalid_grant", RECONNECT, quiet=False)
    assert "connected to Google as alice@example.com" in result[1]  # stored, but refused
    token_path("alice").write_text("{}")
    assert_one_line_error(run("status"), "token", "is unusable: reconnect with")
    code, out, _ = run("disconnect")
    assert code == 0 and "token removed" in out and not token_path("alice").exists()
    assert "google_account" not in open_store(db).user("alice").settings
    code, out, _ = run("disconnect")
    assert code == 0 and "no Google account was connected" in out

    everything = "".join(outputs)
    assert fake.refresh_token not in everything and access_token not in everything
    assert fake.client_secret not in everything


BOOT = """import sys
from bridge.cli.main import app, main
from bridge.cli.google_cmd import google_app
if not any(group.name == "google" for group in app.registered_groups):
    app.add_typer(google_app, name="google")
sys.exit(main(sys.argv[1:]))
"""


def _command_env(fake: FakeGoogleCalendar, tokens: Path, db: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "GESTAN_BRIDGE_DB": db, "GESTAN_BRIDGE_TOKEN_DIR": str(tokens),
            "GESTAN_BRIDGE_GOOGLE_TOKEN_URI": fake.token_uri,
            "GESTAN_BRIDGE_GOOGLE_AUTH_URI": fake.auth_uri,
            "GESTAN_BRIDGE_GOOGLE_API_URL": fake.api_url, **extra}


def test_cli_connect_opens_the_browser_of_BROWSER(fake, tokens, db, tmp_path):
    """The real default path: webbrowser runs $BROWSER, which fetches the consent page."""
    browser = tmp_path / "browser"
    browser.write_text(f"#!{sys.executable}\nimport sys, urllib.request\n"
                       "urllib.request.urlopen(sys.argv[1], timeout=10).read()\n")
    browser.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-c", BOOT, "google", "connect", "--user", "alice",
         "--client-secrets", str(client_secrets_file(fake, tmp_path / "client.json")),
         "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
        env=_command_env(fake, tokens, db, BROWSER=str(browser)))
    assert done.returncode == 0, done.stderr
    assert "alice: Google account alice@example.com connected" in done.stdout
    data = stored(token_path("alice"))
    assert mode(token_path("alice")) == 0o600 and mode(tokens) == 0o700
    for secret in (data["refresh_token"], data["token"], fake.client_secret):
        assert secret not in done.stdout and secret not in done.stderr


def test_cli_connect_no_browser_prints_the_address(fake, tokens, db, tmp_path):
    with subprocess.Popen(
            [sys.executable, "-c", BOOT, "google", "connect", "--user", "alice", "--no-browser",
             "--client-secrets", str(client_secrets_file(fake, tmp_path / "client.json")),
             "--timeout", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_command_env(fake, tokens, db, BROWSER="/bin/false")) as command:
        assert command.stdout is not None
        printed = []
        for line in command.stdout:
            printed.append(line)
            if line.startswith(fake.auth_uri):
                break
        assert printed, "no address printed"
        answer = requests.get(printed[-1].strip(), timeout=10)   # the user, by hand
        out, err = command.communicate(timeout=30)
    assert answer.status_code == 200 and command.returncode == 0, err
    assert "connected" in out
    data = stored(token_path("alice"))
    everything = "".join(printed) + out + err
    assert data["refresh_token"] not in everything and data["token"] not in everything
