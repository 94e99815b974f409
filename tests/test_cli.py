"""The ``gestan-bridge`` command as a user types it (the installed console script), on a new
database (its first command creates the schema)."""

from __future__ import annotations

import os
import subprocess
from datetime import date, timedelta

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


def test_users_and_agenda_round_trip(new_db_url):
    created = run(new_db_url, "users", "add", "dora", "--password", "pw", "--name", "Dora")
    assert created.returncode == 0
    listed = run(new_db_url, "users", "list")
    assert "dora" in listed.stdout and "Dora" in listed.stdout
    day = date.today() + timedelta(days=3)
    added = run(new_db_url, "agenda", "add", "--user", "dora", "--subject", "Réunion, étage 2",
                "--start", f"{day} 14:30", "--duration", "45", "--location", "Lyon")
    assert added.returncode == 0, added.stderr
    run(new_db_url, "agenda", "add", "--user", "dora", "--subject", "Appeler M. Petit",
        "--start", f"{day} 09:00", "--type", "appel")
    listing = run(new_db_url, "agenda", "list", "--user", "dora")
    [line] = listing.stdout.strip().splitlines()
    assert f"{day} 14:30-15:15" in line and "Réunion, étage 2" in line and "@ Lyon" in line
    assert "Appeler" in run(new_db_url, "agenda", "list", "--user", "dora", "--all-types").stdout
    action_id = line.split()[0]
    assert run(new_db_url, "agenda", "delete", "--user", "dora", action_id).returncode == 0
    assert run(new_db_url, "agenda", "list", "--user", "dora").stdout.strip() == ""


def test_settings_and_admin_flag(new_db_url):
    run(new_db_url, "users", "add", "eve", "--password", "pw")
    changed = run(new_db_url, "users", "set", "eve", "--admin", "--google-calendar", "Gestan RDV",
                  "--timezone", "America/Montreal")
    assert changed.returncode == 0, changed.stderr
    listed = run(new_db_url, "users", "list").stdout
    assert "yes" in listed and "google_calendar=Gestan RDV" in listed
    assert "America/Montreal" in listed


def test_import_reports_added_updated_rejected(new_db_url, tmp_path):
    """Each rejected object is one line on stderr with its reason; the others are imported,
    and the exit status (3) says that not everything was."""
    run(new_db_url, "users", "add", "fred", "--password", "pw")
    day = date.today() + timedelta(days=4)
    ics = tmp_path / "export.ics"
    ics.write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
        f"BEGIN:VEVENT\r\nUID:imp-1\r\nDTSTART:{day:%Y%m%d}T090000Z\r\n"
        f"DTEND:{day:%Y%m%d}T100000Z\r\nSUMMARY:Premier\r\nEND:VEVENT\r\n"
        f"BEGIN:VEVENT\r\nUID:imp-2\r\nDTSTART;TZID=Mars/Olympus:{day:%Y%m%d}T110000\r\n"
        f"DTEND;TZID=Mars/Olympus:{day:%Y%m%d}T120000\r\nSUMMARY:Sur Mars\r\nEND:VEVENT\r\n"
        "BEGIN:VTODO\r\nUID:todo-1\r\nSUMMARY:Tache\r\nEND:VTODO\r\n"
        "END:VCALENDAR\r\n", encoding="utf-8")
    first = run(new_db_url, "agenda", "import", "--user", "fred", str(ics))
    assert first.returncode == 3, first.stderr
    assert "1 added, 0 updated, 0 unchanged, 2 rejected" in first.stdout
    rejected = first.stderr.splitlines()
    assert len(rejected) == 2 and all(line.startswith("gestan-bridge: error: export.ics: "
                                                      "rejected ") for line in rejected)
    assert "imp-2: unknown TZID 'Mars/Olympus'" in first.stderr
    assert "VTODO todo-1" in first.stderr
    ics.write_text(ics.read_text().replace("Premier", "Premier (modifié)"), encoding="utf-8")
    second = run(new_db_url, "agenda", "import", "--user", "fred", str(ics))
    assert "0 added, 1 updated, 0 unchanged, 2 rejected" in second.stdout
    assert "Premier (modifié)" in run(new_db_url, "agenda", "list", "--user", "fred").stdout


def test_help_exits_zero(new_db_url):
    result = run(new_db_url, "sync", "--help")
    assert result.returncode == 0 and "open" in result.stdout
