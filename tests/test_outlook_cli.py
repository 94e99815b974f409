"""``gestan-bridge outlook connect|status|disconnect`` for an Exchange mailbox (EWS), as a
user types them, against the EWS fake through the real exchangelib."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from tests.clirun import invoke
from tests.conftest import sqlite_at_head
from tests.fakes.autodiscover import ExchangeNetwork
from tests.fakes.ews import FakeEws


@pytest.fixture
def ews(tmp_path, request):
    """An Exchange server taking Basic (or, parametrized, NTLM) and a user alice."""
    with FakeEws(auth=getattr(request, "param", "basic")) as fake:
        env = {"GESTAN_BRIDGE_DB": sqlite_at_head(tmp_path / "g.db"),
               "GESTAN_BRIDGE_TOKEN_DIR": str(tmp_path / "tokens")}
        assert invoke(env, "users", "add", "alice", "--password", "pw").returncode == 0
        secret = tmp_path / "password.txt"
        secret.write_text(fake.password + "\n")
        yield fake, env, secret, tmp_path


def connect(env, fake, secret, *extra):
    return invoke(env, "outlook", "connect", "--user", "alice", "--ews-url", fake.url,
                  "--email", fake.email, "--username", fake.username,
                  "--password-file", str(secret), *extra)


def one_error(result, *words):
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("gestan-bridge: error: "), line
    for word in words:
        assert word in line, line


def test_connect_checks_then_keeps_the_connection_privately(ews):
    fake, env, secret, tmp = ews
    done = connect(env, fake, secret)
    assert done.returncode == 0, done.stderr
    assert fake.email in done.stdout and fake.password not in done.stdout + done.stderr
    [kept] = (tmp / "tokens").iterdir()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp / "tokens").stat().st_mode) == 0o700
    assert [r.service for r in fake.request_log][-1] == "GetFolder", "the check asked"
    shown = invoke(env, "outlook", "status", "--user", "alice", "--check")
    assert shown.returncode == 0, shown.stderr
    assert fake.url in shown.stdout and "accepts" in shown.stdout
    assert fake.password not in shown.stdout + shown.stderr


def test_a_wrong_password_is_one_line_at_once_and_keeps_nothing(ews):
    fake, env, secret, tmp = ews
    secret.write_text("not the password\n")
    before = fake.request_count
    refused = connect(env, fake, secret)
    one_error(refused, "wrong user name or password", "outlook connect")
    assert fake.request_count - before == 2, "no retry of a 401, then the schemes asked"
    assert not (tmp / "tokens").exists() or not any((tmp / "tokens").iterdir())
    shown = invoke(env, "outlook", "status", "--user", "alice")
    assert "not connected" in shown.stdout


def kept_nothing(env, tmp):
    assert not (tmp / "tokens").exists() or not any((tmp / "tokens").iterdir())
    assert "not connected" in invoke(env, "outlook", "status", "--user", "alice").stdout


@pytest.mark.parametrize("ews", ["ntlm"], indirect=True)
def test_ntlm_connects_and_syncs(ews):
    """--auth ntlm against a server taking NTLM only: the handshake (requests_ntlm in
    exchangelib, pyspnego in the fake) for the check, then for the sync's close and open."""
    from datetime import date, timedelta

    fake, env, secret, _ = ews
    done = connect(env, fake, secret, "--auth", "ntlm")
    assert done.returncode == 0, done.stderr
    assert "ntlm authentication" in done.stdout and fake.password not in done.stdout
    shown = invoke(env, "outlook", "status", "--user", "alice", "--check")
    assert shown.returncode == 0 and "ntlm authentication" in shown.stdout, shown.stderr
    day = date.today() + timedelta(days=4)
    assert invoke(env, "agenda", "add", "--user", "alice", "--subject", "Devis NTLM",
                  "--start", f"{day} 09:00").returncode == 0
    closed = invoke(env, "sync", "close", "--user", "alice")
    assert closed.returncode == 0 and "outlook: 1 created" in closed.stdout, closed.stdout
    [item] = fake.items("calendar")
    fake.modify(item["id"], Subject="Devis NTLM (signé)")
    opened = invoke(env, "sync", "open", "--user", "alice")
    assert opened.returncode == 0 and "1 updated" in opened.stdout, opened.stdout
    assert "Devis NTLM (signé)" in invoke(env, "agenda", "list", "--user", "alice").stdout


@pytest.mark.parametrize("ews", ["ntlm"], indirect=True)
def test_ntlm_with_a_wrong_password_is_one_line_at_once_and_keeps_nothing(ews):
    fake, env, secret, tmp = ews
    secret.write_text("not the password\n")
    before = fake.request_count
    began = time.monotonic()
    refused = connect(env, fake, secret, "--auth", "ntlm")
    one_error(refused, "wrong user name or password", "outlook connect")
    assert time.monotonic() - began < 2
    assert fake.request_count - before == 4, "one handshake (3 requests), the schemes asked"
    kept_nothing(env, tmp)


@pytest.mark.parametrize("ews", ["ntlm"], indirect=True)
def test_basic_against_a_server_taking_ntlm_only_says_so(ews):
    fake, env, secret, tmp = ews
    refused = connect(env, fake, secret)  # the right password, the wrong scheme
    one_error(refused, "does not take basic authentication", "offers ntlm",
              "outlook connect again with --auth ntlm")
    kept_nothing(env, tmp)


def test_ntlm_against_a_server_taking_basic_only_says_so(ews):
    fake, env, secret, tmp = ews
    refused = connect(env, fake, secret, "--auth", "ntlm")
    one_error(refused, "does not take ntlm authentication", "--auth basic")
    kept_nothing(env, tmp)


def autodiscover_connect(env, fake, secret, *extra):
    """``outlook connect`` without --ews-url: exchangelib's autodiscover finds the server."""
    return invoke(env, "outlook", "connect", "--user", "alice", "--email", fake.email,
                  "--username", fake.username, "--password-file", str(secret), *extra)


@pytest.mark.parametrize(("ews", "published"), [("basic", "autodiscover host"),
                                                ("ntlm", "SRV record")], indirect=["ews"])
def test_connect_without_an_ews_url_autodiscovers_the_server(ews, published):
    """exchangelib's SOAP autodiscover from alice@example.com: example.com has no address,
    then autodiscover.example.com answers (or, with an SRV record, mail.example.com does);
    the EWS URL it gives is checked and kept."""
    fake, env, secret, tmp = ews
    auth = ["--auth", fake.auth]
    hosts, srv = (({"autodiscover.example.com": fake}, None) if published == "autodiscover host"
                  else ({"mail.example.com": fake}, {"example.com": "mail.example.com"}))
    with ExchangeNetwork(hosts, tmp / "net", srv=srv) as network:
        done = autodiscover_connect(env, fake, secret, *auth)
    assert done.returncode == 0, done.stderr
    assert "GetUserSettings" in [r.service for r in fake.request_log]
    assert ("example.com", "A") in network.dns.queries, "autodiscover tried the domain first"
    assert fake.url in done.stdout and "syncs with the main calendar" in done.stdout
    shown = invoke(env, "outlook", "status", "--user", "alice", "--check")
    assert shown.returncode == 0 and fake.url in shown.stdout, shown.stderr
    assert f"{fake.auth} authentication" in shown.stdout


@pytest.mark.parametrize("ews", ["ntlm"], indirect=True)
def test_autodiscover_then_basic_against_a_server_taking_ntlm_only_says_so(ews):
    """Autodiscover finds its own scheme, but the check uses the one asked for (and kept):
    a connection that a later sync could not use is never stored."""
    fake, env, secret, tmp = ews
    with ExchangeNetwork({"autodiscover.example.com": fake}, tmp / "net"):
        refused = autodiscover_connect(env, fake, secret)  # --auth basic by default
    one_error(refused, "does not take basic authentication", "--auth ntlm")
    kept_nothing(env, tmp)


def test_autodiscover_finding_nothing_is_one_line_suggesting_the_url(ews):
    fake, env, secret, tmp = ews
    with ExchangeNetwork({}, tmp / "net") as network:  # example.com publishes no Exchange
        refused = autodiscover_connect(env, fake, secret)
    one_error(refused, "autodiscover found no Exchange server for alice@example.com",
              "--ews-url https://")
    assert ("_autodiscover._tcp.example.com", "SRV") in network.dns.queries, "every step"
    assert fake.request_count == 0
    kept_nothing(env, tmp)


def test_autodiscover_with_a_wrong_password_is_one_line(ews):
    fake, env, secret, tmp = ews
    secret.write_text("not the password\n")
    with ExchangeNetwork({"autodiscover.example.com": fake}, tmp / "net"):
        refused = autodiscover_connect(env, fake, secret)
    one_error(refused, "wrong user name or password", "outlook connect")
    assert fake.request_count == 2, "the scheme asked, then one refusal: no retry"
    kept_nothing(env, tmp)


def test_a_password_changed_on_the_server_fails_the_check(ews):
    fake, env, secret, _ = ews
    assert connect(env, fake, secret).returncode == 0
    fake.set_password("changed")
    one_error(invoke(env, "outlook", "status", "--user", "alice", "--check"),
              "wrong user name or password", "outlook connect")


def test_an_unreachable_server_or_a_bad_argument_is_one_line(ews):
    fake, env, secret, tmp = ews
    port = fake.url.split(":")[2].split("/")[0]
    unreachable = invoke(env, "outlook", "connect", "--user", "alice", "--ews-url",
                         fake.url.replace(port, "1"), "--email", fake.email, "--username",
                         fake.username, "--password-file", str(secret))
    one_error(unreachable, "could not be reached")
    one_error(connect(env, fake, secret, "--auth", "kerberos"), "unknown authentication")
    one_error(connect(env, fake, tmp / "missing.txt"), "cannot read the password file")
    one_error(invoke(env, "outlook", "connect", "--user", "nobody", "--ews-url", fake.url,
                     "--email", fake.email, "--username", fake.username, "--password-file",
                     str(secret)), "no user 'nobody'")


def test_disconnect_forgets_the_secret(ews):
    fake, env, secret, tmp = ews
    assert connect(env, fake, secret).returncode == 0
    gone = invoke(env, "outlook", "disconnect", "--user", "alice")
    assert gone.returncode == 0 and "removed" in gone.stdout
    assert not any(p.name.endswith(".outlook.json") for p in (tmp / "tokens").iterdir())
    assert "no Outlook connection" in invoke(env, "outlook", "disconnect", "--user",
                                             "alice").stdout


def test_connect_finds_the_calendar_once_so_the_first_sync_asks_no_folder(ews):
    """What connect learns (the folder) is kept: the first close makes its items at once."""
    from datetime import date, timedelta

    fake, env, secret, _ = ews
    done = connect(env, fake, secret)
    assert done.returncode == 0 and "syncs with the main calendar" in done.stdout
    day = date.today() + timedelta(days=2)
    assert invoke(env, "agenda", "add", "--user", "alice", "--subject", "Devis",
                  "--start", f"{day} 10:00").returncode == 0
    before = len(fake.request_log)
    assert invoke(env, "sync", "close", "--user", "alice").returncode == 0
    assert [r.service for r in fake.request_log[before:]] == ["CreateItem"]


def test_connect_names_the_calendars_when_the_chosen_one_is_missing(ews):
    fake, env, secret, _ = ews
    assert invoke(env, "users", "set", "alice", "--outlook-calendar", "Nowhere"
                  ).returncode == 0
    done = connect(env, fake, secret)
    assert done.returncode == 0, "the connection itself is kept"
    assert "calendar named 'Nowhere'" in done.stderr and "'Calendar'" in done.stderr
    assert "--outlook-calendar NAME" in done.stderr
    assert "connected" in invoke(env, "outlook", "status", "--user", "alice").stdout
    assert invoke(env, "sync", "close", "--user", "alice").returncode != 0


def test_the_outlook_calendar_setting(ews):
    _, env, _, _ = ews
    assert invoke(env, "users", "set", "alice", "--outlook-calendar", "Gestan").returncode == 0
    assert "outlook_calendar=Gestan" in invoke(env, "users", "list").stdout
    assert os.environ.get("GESTAN_BRIDGE_TOKEN_DIR") != env["GESTAN_BRIDGE_TOKEN_DIR"]


def test_sync_with_exchange_as_a_user_runs_it(ews):
    """Connect, then the hooks' commands: close pushes with SendToNone into the main
    Calendar, open brings Outlook's edits back, the default target is every one set up."""
    from datetime import date, timedelta

    fake, env, secret, _ = ews
    assert connect(env, fake, secret).returncode == 0
    day = date.today() + timedelta(days=3)
    assert invoke(env, "agenda", "add", "--user", "alice", "--subject", "Client Dupont",
                  "--start", f"{day} 14:30", "--duration", "45").returncode == 0
    closed = invoke(env, "sync", "close", "--user", "alice")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    assert "close alice ⇄ outlook: ok" in closed.stdout and "outlook: 1 created" in closed.stdout
    [item] = fake.items("calendar")
    assert item["Subject"] == "Client Dupont"
    creates = [r for r in fake.request_log if r.service == "CreateItem"]
    assert creates and all(r.attrs.get("SendMeetingInvitations") == "SendToNone"
                           for r in creates)
    fake.modify(item["id"], Subject="Client Dupont (salle 2)")
    opened = invoke(env, "sync", "open", "--user", "alice", "--target", "outlook")
    assert opened.returncode == 0 and "gestan: 0 created, 1 updated" in opened.stdout
    listed = invoke(env, "agenda", "list", "--user", "alice").stdout
    assert "Client Dupont (salle 2)" in listed
    fake.reset_log()
    again = invoke(env, "sync", "open", "--user", "alice")
    assert again.returncode == 0 and fake.request_count == 1, "1 request when nothing changed"


@pytest.fixture
def graph(tmp_path):
    from tests.fakes.graph import FakeGraph

    with FakeGraph(device_interval=1) as fake:
        env = {"GESTAN_BRIDGE_DB": f"sqlite:///{tmp_path / 'g.db'}",
               "GESTAN_BRIDGE_TOKEN_DIR": str(tmp_path / "tokens"),
               "GESTAN_BRIDGE_GRAPH_AUTHORITY": fake.authority_url,
               "GESTAN_BRIDGE_GRAPH_API_URL": fake.api_url,
               "REQUESTS_CA_BUNDLE": fake.ca_file, "CURL_CA_BUNDLE": ""}
        assert invoke(env, "users", "add", "alice", "--password", "pw").returncode == 0
        secret = tmp_path / "client-secret.txt"
        secret.write_text(fake.client_secret + "\n")
        yield fake, env, secret, tmp_path


def graph_connect(env, fake, secret, *extra):
    return invoke(env, "outlook", "connect", "--user", "alice", "--graph", "--tenant",
                  fake.tenant, "--client-id", fake.client_id, "--client-secret-file",
                  str(secret), "--mailbox", fake.mailbox, *extra)


def test_microsoft_365_connect_status_sync_and_disconnect(graph):
    from datetime import date, timedelta

    fake, env, secret, tmp = graph
    done = graph_connect(env, fake, secret)
    assert done.returncode == 0, done.stderr
    assert fake.client_secret not in done.stdout + done.stderr
    files = [p for p in (tmp / "tokens").rglob("*") if p.is_file()]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    shown = invoke(env, "outlook", "status", "--user", "alice", "--check")
    assert shown.returncode == 0 and fake.mailbox in shown.stdout, shown.stderr
    day = date.today() + timedelta(days=3)
    invoke(env, "agenda", "add", "--user", "alice", "--subject", "Revue", "--start",
           f"{day} 10:00")
    closed = invoke(env, "sync", "close", "--user", "alice")
    assert closed.returncode == 0 and "outlook: 1 created" in closed.stdout, closed.stdout
    assert [e["subject"] for e in fake.events()] == ["Revue"]
    assert fake.invitations == [], "no invitation ever"
    gone = invoke(env, "outlook", "disconnect", "--user", "alice")
    assert gone.returncode == 0 and "removed" in gone.stdout
    assert not [p for p in (tmp / "tokens").rglob("*") if p.is_file()]


def test_microsoft_365_refusals_are_one_line(graph):
    fake, env, secret, tmp = graph
    secret.write_text("wrong\n")
    one_error(graph_connect(env, fake, secret), "invalid_client")
    one_error(invoke(env, "outlook", "connect", "--user", "alice", "--graph"),
              "--tenant and --client-id")
    one_error(invoke(env, "outlook", "connect", "--user", "alice", "--graph", "--tenant",
                     fake.tenant, "--client-id", fake.client_id, "--client-secret-file",
                     str(secret)), "--mailbox")
    assert "not connected" in invoke(env, "outlook", "status", "--user", "alice").stdout


def test_a_person_signs_in_with_a_device_code(graph):
    """Without a secret, connect prints where to go and the code, then waits for the
    sign-in (approved here by the fake's user, a moment later)."""
    fake, env, _, tmp = graph
    approver = threading.Timer(0.5, fake.approve_device_code)
    approver.start()
    try:
        done = invoke(env, "outlook", "connect", "--user", "alice", "--graph", "--tenant",
                      fake.tenant, "--client-id", fake.public_client_id)
    finally:
        approver.cancel()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "enter the code" in lines[0] and "connected to Microsoft 365" in lines[-2]
    assert lines[-1] == "alice: syncs with the main calendar"
    assert fake.user in lines[-2], "the signed-in account"
    cache = [p for p in (tmp / "tokens").rglob("msal_cache.json")]
    assert cache and stat.S_IMODE(cache[0].stat().st_mode) == 0o600
    assert invoke(env, "outlook", "status", "--user", "alice", "--check").returncode == 0
