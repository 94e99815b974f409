"""The ``gestan-bridge`` command as a user types it (the installed console script)."""

from __future__ import annotations

import os
import subprocess
from datetime import date, timedelta

import pytest

from tests.clirun import invoke, run_script


def run(db_url: str, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess:
    return invoke({"GESTAN_BRIDGE_DB": db_url}, *args, input_text=input_text)


def test_the_installed_script_runs_and_says_why_it_fails(tmp_path):
    """The console script itself: its output, one-line errors and exit statuses."""
    env = {**os.environ, "GESTAN_BRIDGE_DB": f"sqlite:///{tmp_path / 'g.db'}"}
    assert run_script(env, "users", "add", "hal", "--password", "pw").returncode == 0
    assert "hal" in run_script(env, "users", "list").stdout
    refused = run_script(env, "agenda", "list", "--user", "nobody")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("gestan-bridge: error:")
    assert run_script(env, "no-such-command").returncode == 2


def test_users_and_agenda_round_trip(db_url):
    assert run(db_url, "users", "add", "dora", "--password", "pw", "--name", "Dora").returncode == 0
    listed = run(db_url, "users", "list")
    assert "dora" in listed.stdout and "Dora" in listed.stdout
    day = date.today() + timedelta(days=3)
    added = run(db_url, "agenda", "add", "--user", "dora", "--subject", "Réunion, étage 2",
                "--start", f"{day} 14:30", "--duration", "45", "--location", "Lyon")
    assert added.returncode == 0, added.stderr
    run(db_url, "agenda", "add", "--user", "dora", "--subject", "Appeler M. Petit",
        "--start", f"{day} 09:00", "--type", "appel")
    listing = run(db_url, "agenda", "list", "--user", "dora")
    [line] = listing.stdout.strip().splitlines()
    assert f"{day} 14:30-15:15" in line and "Réunion, étage 2" in line and "@ Lyon" in line
    assert "Appeler" in run(db_url, "agenda", "list", "--user", "dora", "--all-types").stdout
    action_id = line.split()[0]
    assert run(db_url, "agenda", "delete", "--user", "dora", action_id).returncode == 0
    assert run(db_url, "agenda", "list", "--user", "dora").stdout.strip() == ""


def test_settings_and_admin_flag(db_url):
    run(db_url, "users", "add", "eve", "--password", "pw")
    changed = run(db_url, "users", "set", "eve", "--admin", "--google-calendar", "Gestan RDV",
                  "--timezone", "America/Montreal")
    assert changed.returncode == 0, changed.stderr
    listed = run(db_url, "users", "list").stdout
    assert "yes" in listed and "google_calendar=Gestan RDV" in listed
    assert "America/Montreal" in listed


def test_import_reports_added_updated_rejected(db_url, tmp_path):
    run(db_url, "users", "add", "fred", "--password", "pw")
    day = date.today() + timedelta(days=4)
    ics = tmp_path / "export.ics"
    ics.write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
        f"BEGIN:VEVENT\r\nUID:imp-1\r\nDTSTART:{day:%Y%m%d}T090000Z\r\n"
        f"DTEND:{day:%Y%m%d}T100000Z\r\nSUMMARY:Premier\r\nEND:VEVENT\r\n"
        f"BEGIN:VEVENT\r\nUID:imp-2\r\n"
        f"DTEND:{day:%Y%m%d}T100000Z\r\nSUMMARY:Sans debut\r\nEND:VEVENT\r\n"
        "BEGIN:VTODO\r\nUID:todo-1\r\nSUMMARY:Tache\r\nEND:VTODO\r\n"
        "END:VCALENDAR\r\n", encoding="utf-8")
    first = run(db_url, "agenda", "import", "--user", "fred", str(ics))
    assert first.returncode == 0
    assert "1 added, 0 updated, 2 rejected" in first.stdout
    assert "imp-2: a VEVENT has no DTSTART" in first.stdout
    ics.write_text(ics.read_text().replace("Premier", "Premier (modifié)"), encoding="utf-8")
    second = run(db_url, "agenda", "import", "--user", "fred", str(ics))
    assert "0 added, 1 updated" in second.stdout
    assert "Premier (modifié)" in run(db_url, "agenda", "list", "--user", "fred").stdout


@pytest.mark.parametrize("args", [
    ("agenda", "list", "--user", "nobody"),
    ("agenda", "add", "--user", "gus", "--subject", "x", "--start", "tomorrow"),
    ("agenda", "delete", "--user", "gus", "999"),
    ("agenda", "delete", "--user", "gus", "not-a-number"),
    ("users", "add", "gus", "--password", "again"),
    ("users", "add", "Bad Login!", "--password", "x"),
    ("users", "set", "gus", "--timezone", "Mars/Olympus"),
    ("agenda", "list", "--user", "gus", "--days", "0"),
    ("agenda", "import", "--user", "gus", "/no/such/file.ics"),
    ("no-such-command",),
])
def test_bad_arguments_give_one_line_and_fail(db_url, args):
    run(db_url, "users", "add", "gus", "--password", "pw")
    result = run(db_url, *args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gestan-bridge: error:")
    assert "Traceback" not in result.stderr


def test_a_command_that_fails_after_printing_exits_non_zero(db_url, tmp_path):
    """``typer.Exit(n)`` inside a command ends the process with status n (an import where
    every entry is rejected reports them, then fails)."""
    run(db_url, "users", "add", "hugo", "--password", "pw")
    ics = tmp_path / "bad.ics"
    ics.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
                   "BEGIN:VTODO\r\nUID:todo-1\r\nSUMMARY:Tache\r\nEND:VTODO\r\n"
                   "END:VCALENDAR\r\n", encoding="utf-8")
    result = run(db_url, "agenda", "import", "--user", "hugo", str(ics))
    assert "0 added, 0 updated, 1 rejected" in result.stdout
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_help_exits_zero(db_url):
    result = run(db_url, "sync", "--help")
    assert result.returncode == 0 and "open" in result.stdout
