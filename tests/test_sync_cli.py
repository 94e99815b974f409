"""``gestan-bridge google connect`` and ``sync open|close|log`` as a user types them, against
the Google fake reached through the documented environment overrides; exit status 0 (ok),
3 (finished, items skipped) and 1 (stopped) on every path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import date, datetime, timedelta

import pytest

from bridge import targets
from bridge.cli.main import main
from bridge.store import open_store
from bridge.targets import TargetKind
from bridge.targets.google_auth import save_credentials
from bridge.targets.memory import MemoryAccount, MemoryCalendar
from tests.clirun import invoke, run_script
from tests.fakes.google_calendar import FakeGoogleCalendar

CALENDAR = "Gestan RDV"


def memory_kind(monkeypatch) -> tuple[MemoryAccount, MemoryCalendar]:
    """Register the in-memory target after Google for this test, set up for a user whose
    settings say ``memory``; every run builds a client of the same account."""
    account = MemoryAccount()
    calendar = account.add_calendar(CALENDAR)
    monkeypatch.setitem(targets._KINDS, "memory", TargetKind(
        "memory", "Memory", lambda user: None if user.settings.get("memory") else "set it",
        lambda user: account.target(CALENDAR)))
    return account, calendar


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
    """``gestan-bridge ARGS`` with the environment ``variables`` (in this process)."""
    return invoke(variables, *args)


def test_connect_push_pull_dry_run_and_log(env):
    fake, cal, variables, tmp = env
    assert cli(variables, "users", "add", "alice", "--password", "pw").returncode == 0
    no_calendar = cli(variables, "sync", "close", "--user", "alice")
    assert no_calendar.returncode == 1 and "--google-calendar" in no_calendar.stderr
    assert no_calendar.stderr.count("\n") == 1
    not_connected = cli(variables, "users", "set", "alice", "--google-calendar", CALENDAR)
    assert not_connected.returncode == 0
    result = cli(variables, "sync", "open", "--user", "alice")
    assert result.returncode == 1 and "google connect" in result.stderr
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
    assert pulled.returncode == 0
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
    assert closed.returncode == 0, "a conflict decided and logged is not a failure"
    log = cli(variables, "sync", "log", "--user", "alice", "--limit", "1")
    assert "conflict" in log.stdout and "losing version" in log.stdout
    # the losing version in words: its own dates, never its time zone's rules
    assert f"Client Dupont (Google), {day} 14:30 → {day} 15:15, Salle Google" in log.stdout
    assert "TZOFFSET" not in log.stdout and "DTSTART" not in log.stdout
    [conflict] = [line for line in log.stdout.splitlines() if "conflict" in line
                  and "won" in line]
    assert f"Client Dupont (Google) ({day} 14:30)" in conflict, "named with its date"


def test_wrong_calendar_name_lists_the_calendars_and_revoked_consent_says_reconnect(env):
    fake, cal, variables, tmp = env
    cli(variables, "users", "add", "alice", "--password", "pw")
    cli(variables, "google", "connect", "--user", "alice", "--authorized-user-file",
        str(tmp / "au.json"))
    cli(variables, "users", "set", "alice", "--google-calendar", "Agenda inexistant")
    wrong = cli(variables, "sync", "open", "--user", "alice")
    assert wrong.returncode == 1 and CALENDAR in wrong.stderr
    assert wrong.stderr.count("\n") == 1
    cli(variables, "users", "set", "alice", "--google-calendar", CALENDAR)
    fake.revoke()
    fake.expire_access_tokens()
    revoked = cli(variables, "sync", "open", "--user", "alice")
    assert revoked.returncode == 1
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
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1
    assert "no longer exists" in gone.stderr
    fake.add_calendar(CALENDAR)
    again = cli(variables, "sync", "open", "--user", "alice")
    assert again.returncode == 0, again.stderr


# ------------------------------------------------------------------ exit status of every path
@pytest.fixture
def alice(env):
    """alice, connected to the fake with CALENDAR named, set up without the CLI."""
    fake, cal, variables, tmp = env
    store = open_store(variables["GESTAN_BRIDGE_DB"])
    store.add_user("alice", "pw", timezone="Europe/Paris")
    store.set_user("alice", settings={"google_calendar": CALENDAR})
    save_credentials("alice", fake.credentials(), tmp / "tokens")
    return fake, cal, variables, store


def google_event(days: int, summary: str, **extra) -> dict:
    start = datetime.now().replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(
        days=days)
    end = start + timedelta(hours=1)
    return {"summary": summary,
            "start": {"dateTime": start.isoformat(), "timeZone": "Europe/Paris"},
            "end": {"dateTime": end.isoformat(), "timeZone": "Europe/Paris"}, **extra}


def add(variables, subject: str, days: int) -> None:
    added = cli(variables, "agenda", "add", "--user", "alice", "--subject", subject,
                "--start", f"{date.today() + timedelta(days=days)} 09:00")
    assert added.returncode == 0, added.stderr


def one_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 1 and one line on stderr, without a traceback, holding ``words``."""
    assert result.returncode == 1, result.stdout + result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("gestan-bridge: error: ") and "Traceback" not in result.stderr
    for word in words:
        assert word in line, line


def test_skipped_items_exit_3(alice):
    fake, cal, variables, _ = alice
    fake.insert_event(cal, google_event(2, "Lisible"))
    fake.insert_event(cal, google_event(3, "Chaque minute",
                                        recurrence=["RRULE:FREQ=MINUTELY;COUNT=30"]))
    result = cli(variables, "sync", "open", "--user", "alice")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "skipped: 1" in result.stdout and "MINUTELY" in result.stdout
    assert result.stderr == "", "items skipped are reported, not an error"
    assert "Lisible" in cli(variables, "agenda", "list", "--user", "alice").stdout


@pytest.mark.parametrize(("status", "reason", "words"), [
    (403, "quotaExceeded", ("google: ", "quota")),
    (400, "badRequest", ("Google refused the request (400 badRequest)", "sync log")),
])
def test_a_stop_exits_1_with_the_report_on_stdout_and_the_reason_on_stderr(alice, status,
                                                                         reason, words):
    """Quota used up, or any refusal the engine does not handle: one line, no traceback,
    nothing written, and the rerun finishes."""
    fake, cal, variables, _ = alice
    add(variables, "Q0", 2)
    fake.fail_next(1, status, reason)
    stopped = cli(variables, "sync", "close", "--user", "alice")
    one_error(stopped, *words)
    assert stopped.stdout.startswith("close alice ⇄ google: stopped")
    assert fake.events(cal) == []
    assert cli(variables, "sync", "close", "--user", "alice").returncode == 0
    assert [e["summary"] for e in fake.events(cal)] == ["Q0"], "the rerun finishes"


def test_mass_delete_guard_exit_1_unless_allowed(alice):
    fake, cal, variables, _ = alice
    ids = [fake.insert_event(cal, google_event(2 + n, f"R{n}"))["id"] for n in range(12)]
    assert cli(variables, "sync", "open", "--user", "alice").returncode == 0
    for event_id in ids[:11]:
        fake.delete_event(cal, event_id)
    guarded = cli(variables, "sync", "open", "--user", "alice")
    one_error(guarded, "--allow-mass-delete")
    assert "gestan: 0 created, 0 updated, 0 deleted" in guarded.stdout
    allowed = cli(variables, "sync", "open", "--user", "alice", "--allow-mass-delete")
    assert allowed.returncode == 0 and "11 deleted" in allowed.stdout


def test_a_sync_already_running_exit_1(alice):
    _, _, variables, store = alice
    user = store.require_user("alice")
    assert store.take_sync_lock(user.id, "other-process", timedelta(minutes=5)) is None
    busy = cli(variables, "sync", "close", "--user", "alice")
    one_error(busy, "already running")
    assert busy.stdout == "", "nothing was run: no report"


def test_unknown_target_exit_1_listing_the_known_ones(alice):
    _, _, variables, _ = alice
    one_error(cli(variables, "sync", "open", "--user", "alice", "--target", "exchange"),
              "unknown target 'exchange'", "google, outlook, all")
    one_error(cli(variables, "sync", "open", "--user", "alice", "--target", "outlook"),
              "has not set up Outlook", "outlook connect")
    assert cli(variables, "sync", "open", "--user", "alice", "--target", "all"
               ).returncode == 0
    assert cli(variables, "sync", "open", "--user", "alice", "--target", "google"
               ).returncode == 0


def test_token_endpoint_down_exit_1(alice):
    _, _, variables, _ = alice
    down = {**variables, "GESTAN_BRIDGE_GOOGLE_TOKEN_URI": "http://127.0.0.1:1/token"}
    one_error(cli(down, "sync", "open", "--user", "alice"), "could not be reached")


def test_sync_log_reads_the_old_and_the_new_counts(alice):
    _, _, variables, store = alice
    user = store.require_user("alice")
    old = store.start_run(user.id, "google", "close", False)
    store.finish_run(old, "ok", "", {"gestan": {"created": 0, "updated": 0, "deleted": 0},
                                     "google": {"created": 7, "updated": 2, "deleted": 1},
                                     "conflicts": 0, "skipped": 0, "requests": 3})
    add(variables, "Neuf", 2)
    assert cli(variables, "sync", "close", "--user", "alice").returncode == 0
    [new, before] = cli(variables, "sync", "log", "--user", "alice").stdout.splitlines()[:2]
    assert "google +1 ~0 -0" in new, new
    assert "google +7 ~2 -1" in before and "requests 3" in before, before


def test_several_targets_print_each_report_and_exit_with_the_worst(alice, monkeypatch,
                                                                   capsys):
    fake, cal, variables, store = alice
    for name in ("GESTAN_BRIDGE_DB", "GESTAN_BRIDGE_TOKEN_DIR", "GESTAN_BRIDGE_GOOGLE_API_URL",
                 "GESTAN_BRIDGE_GOOGLE_TOKEN_URI"):
        monkeypatch.setenv(name, variables[name])
    account, memory = memory_kind(monkeypatch)
    add(variables, "Partout", 2)
    assert main(["sync", "close", "--user", "alice"]) == 0, "memory is not set up: Google only"
    assert "⇄ memory" not in capsys.readouterr().out
    store.set_user("alice", settings={"memory": "on"})
    assert main(["sync", "close", "--user", "alice"]) == 0
    out = capsys.readouterr().out
    assert out.index("close alice ⇄ google: ok") < out.index("close alice ⇄ memory: ok")
    assert "memory: 1 created" in out and len(memory.live()) == 1
    account.fail_next(10, kind="read")
    fake.insert_event(cal, google_event(3, "Chaque minute",
                                        recurrence=["RRULE:FREQ=MINUTELY;COUNT=30"]))
    assert main(["sync", "open", "--user", "alice", "--target", "google"]) == 3
    assert main(["sync", "open", "--user", "alice"]) == 1, "stopped (1) is worse than 3"
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == ("gestan-bridge: error: memory: the remote "
                                             "calendar is not answering (injected failure)")
    assert "open alice ⇄ google: ok" in captured.out



def test_what_enters_the_window_is_synced_when_the_clock_moves(alice):
    """The CLI's own clock moved with faketime (installed by .ci/install-tools.sh): an
    appointment 405 days ahead in Google and one 400 days ahead in Gestan are synced two
    months later, not before."""
    fake, cal, variables, store = alice
    fake.insert_event(cal, google_event(405, "Loin (Google)"))
    add(variables, "Loin (Gestan)", 400)
    assert cli(variables, "sync", "open", "--user", "alice").returncode == 0
    assert cli(variables, "sync", "close", "--user", "alice").returncode == 0
    assert [e["summary"] for e in fake.events(cal)] == ["Loin (Google)"], "nothing yet"
    faketime = shutil.which("faketime")
    assert faketime, "faketime is installed by .ci/install-tools.sh (run.sh test)"

    def later(*args: str) -> subprocess.CompletedProcess:
        return run_script(variables, *args, prefix=(faketime, "-f", "+60d"))

    opened = later("sync", "open", "--user", "alice")
    assert opened.returncode == 0, opened.stdout + opened.stderr
    assert "gestan: 1 created" in opened.stdout, opened.stdout
    closed = later("sync", "close", "--user", "alice")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    assert sorted(e["summary"] for e in fake.events(cal)) == ["Loin (Gestan)",
                                                              "Loin (Google)"]
    subjects = sorted(a.event.subject for a in store.agenda("alice"))
    assert subjects == ["Loin (Gestan)", "Loin (Google)"]
