"""``gestan-bridge google connect`` and ``sync open|close|log`` as a user types them, against
the Google fake reached through the documented environment overrides."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta

import pytest

from tests.fakes.google_calendar import FakeGoogleCalendar

CALENDAR = "Gestan RDV"


@pytest.fixture
def env(tmp_path):
    with FakeGoogleCalendar() as fake:
        cal = fake.add_calendar(CALENDAR)
        variables = {**os.environ, "GESTAN_BRIDGE_DB": f"sqlite:///{tmp_path / 'g.db'}",
                     "GESTAN_BRIDGE_TOKEN_DIR": str(tmp_path / "tokens"),
                     "GESTAN_BRIDGE_GOOGLE_API_URL": fake.api_url,
                     "GESTAN_BRIDGE_GOOGLE_TOKEN_URI": fake.token_uri}
        info = json.loads(fake.credentials().to_json())
        info.pop("token", None)
        (tmp_path / "au.json").write_text(json.dumps(info))
        yield fake, cal, variables, tmp_path


def cli(variables, *args):
    exe = shutil.which("gestan-bridge") or os.path.join(os.path.dirname(sys.executable),
                                                        "gestan-bridge")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120,
                          env=variables)


def test_connect_push_pull_dry_run_and_log(env):
    fake, cal, variables, tmp = env
    assert cli(variables, "users", "add", "alice", "--password", "pw").returncode == 0
    no_calendar = cli(variables, "sync", "close", "--user", "alice")
    assert no_calendar.returncode != 0 and "--google-calendar" in no_calendar.stderr
    assert no_calendar.stderr.count("\n") == 1
    not_connected = cli(variables, "users", "set", "alice", "--google-calendar", CALENDAR)
    assert not_connected.returncode == 0
    result = cli(variables, "sync", "open", "--user", "alice")
    assert result.returncode != 0 and "google connect" in result.stderr
    connected = cli(variables, "google", "connect", "--user", "alice",
                    "--authorized-user-file", str(tmp / "au.json"))
    assert connected.returncode == 0, connected.stderr
    assert fake.refresh_token not in connected.stdout + connected.stderr
    day = date.today() + timedelta(days=3)
    cli(variables, "agenda", "add", "--user", "alice", "--subject", "Client Dupont",
        "--start", f"{day} 14:30", "--duration", "45")
    dry = cli(variables, "sync", "close", "--user", "alice", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would create in google" in dry.stdout and "Client Dupont" in dry.stdout
    assert fake.events(cal) == [], "a dry run changes nothing"
    pushed = cli(variables, "sync", "close", "--user", "alice")
    assert pushed.returncode == 0, pushed.stderr
    assert "google: 1 created" in pushed.stdout
    [event] = fake.events(cal)
    assert event["summary"] == "Client Dupont"
    assert event["start"]["dateTime"].startswith(f"{day}T14:30")
    fake.patch_event(cal, event["id"], {"summary": "Client Dupont (Google)"})
    pulled = cli(variables, "sync", "open", "--user", "alice")
    assert "gestan: 0 created, 1 updated" in pulled.stdout, pulled.stdout + pulled.stderr
    assert "Client Dupont (Google)" in cli(variables, "agenda", "list", "--user",
                                           "alice").stdout
    log = cli(variables, "sync", "log", "--user", "alice")
    assert log.returncode == 0
    lines = log.stdout.splitlines()
    assert "open" in lines[0] and "ok" in lines[0] and "~1" in lines[0]
    assert any("dry run" in line for line in lines)
    # both sides change: close makes Gestan win, the Google version is kept in the log
    fake.patch_event(cal, event["id"], {"location": "Salle Google"})
    action_id = cli(variables, "agenda", "list", "--user", "alice").stdout.split()[0]
    cli(variables, "agenda", "delete", "--user", "alice", action_id)
    closed = cli(variables, "sync", "close", "--user", "alice")
    assert "conflicts: 1" in closed.stdout, closed.stdout
    log = cli(variables, "sync", "log", "--user", "alice", "--limit", "1")
    assert "conflict" in log.stdout and "losing version" in log.stdout
    assert "LOCATION:Salle Google" in log.stdout


def test_wrong_calendar_name_lists_the_calendars_and_revoked_consent_says_reconnect(env):
    fake, cal, variables, tmp = env
    cli(variables, "users", "add", "alice", "--password", "pw")
    cli(variables, "google", "connect", "--user", "alice", "--authorized-user-file",
        str(tmp / "au.json"))
    cli(variables, "users", "set", "alice", "--google-calendar", "Agenda inexistant")
    wrong = cli(variables, "sync", "open", "--user", "alice")
    assert wrong.returncode != 0 and CALENDAR in wrong.stderr
    assert wrong.stderr.count("\n") == 1
    cli(variables, "users", "set", "alice", "--google-calendar", CALENDAR)
    fake.revoke()
    fake.expire_access_tokens()
    revoked = cli(variables, "sync", "open", "--user", "alice")
    assert revoked.returncode != 0
    assert "invalid_grant" in revoked.stderr and "google connect --user alice" in revoked.stderr
    assert revoked.stderr.count("\n") == 1


def test_bad_arguments_are_one_line(env):
    _, _, variables, _ = env
    bad = cli(variables, "sync", "open", "--user", "alice", "--days-back", "-3")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1
    unknown = cli(variables, "sync", "open", "--user", "nobody")
    assert unknown.returncode != 0 and "nobody" in unknown.stderr


def test_a_calendar_deleted_in_google_is_one_clear_line_and_found_again_by_name(env):
    fake, cal, variables, tmp = env
    cli(variables, "users", "add", "alice", "--password", "pw")
    cli(variables, "google", "connect", "--user", "alice", "--authorized-user-file",
        str(tmp / "au.json"))
    cli(variables, "users", "set", "alice", "--google-calendar", CALENDAR)
    assert cli(variables, "sync", "open", "--user", "alice").returncode == 0
    fake.delete_calendar(cal)  # the user deletes the calendar in Google, then makes a new one
    gone = cli(variables, "sync", "open", "--user", "alice")
    assert gone.returncode != 0 and gone.stderr.count("\n") == 1
    assert "no longer exists" in gone.stderr
    fake.add_calendar(CALENDAR)
    again = cli(variables, "sync", "open", "--user", "alice")
    assert again.returncode == 0, again.stderr
