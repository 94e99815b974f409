"""A command line that scripts and people can trust (issue 11): every failure of every
command is one line on stderr and a non-zero exit, never a traceback; ``agenda import``
fails when it did not import everything; ``users list`` cuts nothing when piped.

In-process (tests/clirun.py ``invoke``) on SQLite: argument handling touches no SQL."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from bridge.cli.main import app
from bridge.store import open_store
from tests.clirun import invoke
from tests.conftest import snapshot, sqlite_at_head

ONE_LINE = "gestan-bridge: error: "


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A SQLite database holding the user gus, and a token directory of its own."""
    url = sqlite_at_head(tmp_path / "g.db")
    open_store(url).add_user("gus", "gus-password")
    (tmp_path / "empty.ics").write_text("")
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                     "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    (tmp_path / "secret.txt").write_text("s3cret\n")
    return {"GESTAN_BRIDGE_DB": url, "GESTAN_BRIDGE_TOKEN_DIR": str(tmp_path / "tokens"),
            "TMP": str(tmp_path)}


def one_line_failure(result: subprocess.CompletedProcess, *words: str) -> str:
    """Non-zero, nothing on stdout, one line on stderr holding ``words``: that line."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(ONE_LINE), lines[0]
    assert result.stdout == "", result.stdout
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# Every command, with bad arguments of each kind it takes: (arguments, words of the line).
# {TMP} is the test's directory.
BAD = [
    (("serve", "--log-level", "verbose"), ["'verbose'", "debug"]),
    (("serve", "--port", "70000"), ["--port", "65535"]),
    (("serve", "--db", "mysql://u:pw-hidden-42@localhost/db"), ["unsupported database URL"]),
    (("serve", "--config", "/no/such/radicale.conf"), ["/no/such/radicale.conf"]),
    (("serve", "--port", "0", "--config", "{TMP}/passwd"), ["{TMP}/passwd"]),
    (("users", "add", "gus", "--password", "again"), ["already exists"]),
    (("users", "add", "Bad Login!", "--password", "x"), ["invalid login"]),
    (("users", "add", "newbie"), ["--password"]),
    (("users", "add", "newbie", "--password", "pw", "--timezone", "Mars/Olympus"),
     ["Mars/Olympus"]),
    (("users", "set", "gus", "--timezone", "Mars/Olympus"), ["Mars/Olympus"]),
    (("users", "set", "nobody", "--name", "x"), ["nobody"]),
    (("users", "set", "gus", "--sync-days-back", "-1"), ["--sync-days-back"]),
    (("users", "list", "--db", "sqlite://"), ["no database file"]),
    (("users", "list", "--db", "sqlite:///"), ["no database file"]),
    (("users", "list", "--db", "sqlite:///:memory:"), ["no database file"]),
    (("users", "list", "--db", "mysql://u:pw-hidden-42@localhost/db"), ["unsupported", "mysql"]),
    (("users", "list", "--db", "not a url"), ["cannot read the database URL"]),
    (("users", "list", "--db", "sqlite:////no/such/dir/g.db"), ["/no/such/dir"]),
    (("users", "list", "--unknown-option"), ["--unknown-option"]),
    (("agenda", "list", "--user", "nobody"), ["nobody"]),
    (("agenda", "list", "--user", "gus", "--days", "0"), ["--days"]),
    (("agenda", "list", "--user", "gus", "--from", "2027-13-01"), ["2027-13-01"]),
    (("agenda", "add", "--user", "gus", "--subject", "x", "--start", "tomorrow"),
     ["tomorrow"]),
    (("agenda", "add", "--user", "gus", "--subject", "x", "--start", "2027-05-03 10:00",
      "--end", "2027-05-03 09:00"), ["before"]),
    (("agenda", "add", "--user", "gus", "--subject", "x", "--start", "2027-05-03 10:00",
      "--end", "2027-05-03 11:00", "--duration", "30"), ["not both"]),
    (("agenda", "add", "--user", "gus", "--subject", "x", "--start", "2027-05-03 10:00",
      "--timezone", "Mars/Olympus"), ["Mars/Olympus"]),
    (("agenda", "add", "--user", "gus", "--subject", "x", "--start", "2027-03-28 02:30"),
     ["does not exist"]),
    (("agenda", "add", "--user", "gus", "--subject", "x", "--start", "2027-05-03 10:00",
      "--type", "party"), ["party"]),
    (("agenda", "add", "--user", "nobody", "--subject", "x", "--start", "2027-05-03 10:00"),
     ["nobody"]),
    (("agenda", "delete", "--user", "gus", "999"), ["999"]),
    (("agenda", "delete", "--user", "gus", "not-a-number"), ["integer"]),
    (("agenda", "import", "--user", "gus", "/no/such/file.ics"), ["/no/such/file.ics"]),
    (("agenda", "import", "--user", "gus", "{TMP}/empty.ics"), ["empty"]),
    (("agenda", "import", "--user", "gus", "{TMP}/passwd"), ["passwd", "not an iCalendar"]),
    (("agenda", "import", "--user", "gus", "{TMP}"), ["{TMP}"]),
    (("agenda", "import", "--user", "nobody", "{TMP}/passwd"), ["nobody"]),
    (("google", "connect", "--user", "gus"), ["--client-secrets"]),
    (("google", "connect", "--user", "gus", "--client-secrets", "/no/such.json"),
     ["/no/such.json"]),
    (("google", "connect", "--user", "nobody", "--authorized-user-file", "/no/such.json"),
     ["nobody"]),
    (("google", "status", "--user", "nobody"), ["nobody"]),
    (("google", "disconnect", "--user", "nobody"), ["nobody"]),
    (("outlook", "connect", "--user", "gus", "--email", "gus@example.com"), ["--username"]),
    (("outlook", "connect", "--user", "gus", "--graph"), ["--tenant"]),
    (("outlook", "connect", "--user", "gus", "--email", "gus@example.com", "--username", "gus",
      "--password-file", "/no/such/file"), ["/no/such/file"]),
    (("outlook", "connect", "--user", "gus", "--email", "gus@example.com", "--username", "gus",
      "--password-file", "{TMP}/secret.txt", "--ews-url",
      "http://127.0.0.1:1/EWS/Exchange.asmx"), ["127.0.0.1"]),
    (("outlook", "connect", "--user", "nobody", "--graph"), ["nobody"]),
    (("outlook", "status", "--user", "nobody"), ["nobody"]),
    (("outlook", "disconnect", "--user", "nobody"), ["nobody"]),
    (("sync", "open", "--user", "nobody"), ["nobody"]),
    (("sync", "open", "--user", "gus", "--days-back", "-3"), ["--days-back"]),
    (("sync", "open", "--user", "gus", "--target", "nowhere"), ["nowhere"]),
    (("sync", "open", "--user", "gus"), ["gus"]),  # no target set up
    (("sync", "close", "--user", "nobody"), ["nobody"]),
    (("sync", "close", "--user", "gus", "--target", "google"), ["google"]),
    (("sync", "unlock", "--user", "nobody"), ["nobody"]),
    (("sync", "log", "--user", "nobody"), ["nobody"]),
    (("sync", "log", "--user", "gus", "--limit", "0"), ["--limit"]),
    (("backup", "/no/such/dir/gestan.backup"), ["/no/such/dir"]),
    (("backup",), ["Missing argument 'file'"]),
    (("restore", "/no/such/gestan.backup"), ["/no/such/gestan.backup"]),
    (("restore", "{TMP}/passwd"), ["{TMP}/passwd"]),
    (("no-such-command",), ["no-such-command"]),
    (("agenda", "no-such-command"), ["no-such-command"]),
]


def _commands(group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command's words (typer's own click: groups are what has sub-commands)."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name)


def test_every_command_is_in_the_table_of_bad_arguments():
    commands = set(_commands(typer.main.get_command(app)))
    missing = {c for c in commands if not any(args[:len(c)] == c for args, _ in BAD)}
    assert not missing, f"add bad arguments of {sorted(missing)} to BAD"


@pytest.mark.parametrize(("args", "words"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_are_one_line_and_a_non_zero_exit(env, args, words):
    store = open_store(env["GESTAN_BRIDGE_DB"])
    before = snapshot(store)
    args = [a.replace("{TMP}", env["TMP"]) for a in args]
    line = one_line_failure(invoke(env, *args), *(w.replace("{TMP}", env["TMP"])
                                                  for w in words))
    assert "pw-hidden-42" not in line and "s3cret" not in line
    assert snapshot(store) == before


def test_serve_on_a_busy_port_names_the_address(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line_failure(invoke(env, "serve", "--port", str(port)))
    assert line == (f"{ONE_LINE}cannot listen on 127.0.0.1:{port}: address already in use")


# ------------------------------------------------------------------ agenda import
def _ics(*events: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + "".join(events)
            + "END:VCALENDAR\r\n")


GOOD = ("BEGIN:VEVENT\r\nUID:good\r\nDTSTART:20270503T090000Z\r\nDTEND:20270503T100000Z\r\n"
        "SUMMARY:Good\r\nEND:VEVENT\r\n")
BAD_TZID = ("BEGIN:VEVENT\r\nUID:mars\r\nDTSTART;TZID=Mars/Olympus:20270503T110000\r\n"
            "DTEND;TZID=Mars/Olympus:20270503T120000\r\nSUMMARY:Mars\r\nEND:VEVENT\r\n")


def test_an_import_that_rejects_anything_fails(env, tmp_path):
    """0: everything imported; 3: some rejected, the rest imported; 1: nothing imported."""
    store = open_store(env["GESTAN_BRIDGE_DB"])
    files = {"mixed": _ics(GOOD, BAD_TZID), "bad-tzid": _ics(BAD_TZID), "none": _ics(),
             "good": _ics(GOOD)}
    for name, text in files.items():
        (tmp_path / f"{name}.ics").write_text(text)

    def imported(name: str) -> subprocess.CompletedProcess:
        return invoke(env, "agenda", "import", "--user", "gus", str(tmp_path / f"{name}.ics"))

    before = snapshot(store)
    only_bad = imported("bad-tzid")
    assert only_bad.returncode == 1 and "0 added, 0 updated, 0 unchanged, 1 rejected" in (
        only_bad.stdout)
    assert only_bad.stderr.splitlines() == [
        f"{ONE_LINE}bad-tzid.ics: rejected mars: unknown TZID 'Mars/Olympus' in DTSTART: use an "
        "IANA zone name or include its VTIMEZONE"]
    one_line_failure(imported("none"), "holds no event")
    assert snapshot(store) == before

    mixed = imported("mixed")
    assert mixed.returncode == 3 and "1 added, 0 updated, 0 unchanged, 1 rejected" in (
        mixed.stdout)
    assert [a.event.subject for a in store.agenda("gus")] == ["Good"]
    good = imported("good")
    assert good.returncode == 0 and good.stderr == ""
    assert "0 added, 0 updated, 1 unchanged, 0 rejected" in good.stdout


# ------------------------------------------------------------------ users list
def test_users_list_piped_cuts_nothing(env):
    name = "Marie-Hélène de La Tour d'Auvergne-Lauraguais " * 4
    email = "marie-helene.de-la-tour-dauvergne-lauraguais@cabinet-de-kinesitherapie.example.fr"
    open_store(env["GESTAN_BRIDGE_DB"]).add_user("mh", "pw", name=name.strip(), email=email,
                                                timezone="America/Argentina/ComodRivadavia")
    listed = invoke(env, "users", "list")  # stdout is not a terminal here
    assert listed.returncode == 0
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert ["mh", name.strip(), email, "America/Argentina/ComodRivadavia", "", ""] in rows
    assert [row[0] for row in rows] == ["gus", "mh"]


def test_the_command_alone_or_a_group_alone_prints_its_help(env):
    for args in ((), ("agenda",), ("sync",)):
        shown = invoke(env, *args)
        assert shown.returncode == 0 and shown.stderr == "", shown.stderr
        assert shown.stdout.startswith("Usage: gestan-bridge") and "Commands" in shown.stdout
