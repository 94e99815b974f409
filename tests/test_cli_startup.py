"""Start-up cost (issue 11): ``--help``, ``users`` and ``agenda`` commands import no target
client library (the commands that talk to Google or Microsoft import theirs), and a database
at the newest revision is opened without Alembic; ``--help`` of every command imports no
database library either. One process runs the commands in turn (every ``--help`` first) and
reports what each has loaded so far."""

from __future__ import annotations

import json
import subprocess
import sys

# google-api-python-client, google-auth, exchangelib, msal and requests (Graph, Google's
# transport): what the google, outlook and sync commands need, and nothing else; and
# Alembic, needed only when there is a migration to run.
LIBRARIES = ("googleapiclient", "google", "exchangelib", "msal", "requests", "alembic")
# SQLAlchemy (and the PostgreSQL driver): what a command that opens the database needs.
DATABASE = ("sqlalchemy", "psycopg")
HELP = [["--help"], *([*command.split(), "--help"] for command in (
    "users", "users list", "users add", "agenda", "agenda add", "agenda import", "sync",
    "sync open", "sync log", "google", "google connect", "outlook", "outlook connect",
    "backup", "restore", "serve"))]

PROBE = """
import contextlib, io, json, sys
from bridge.cli.main import main
libraries = {libraries!r}
seen = []
for args in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(args)
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(libraries))
    seen.append([" ".join(args), code, loaded])
print(json.dumps(seen))
"""


def test_help_users_and_agenda_import_no_target_library_nor_alembic(tmp_path):
    from alembic.script import ScriptDirectory

    from bridge.store import engine, open_store

    heads = ScriptDirectory(str(engine._MIGRATIONS)).get_heads()
    assert engine.head_revisions() == frozenset(heads), "read the scripts as Alembic does"
    db = f"sqlite:///{tmp_path / 'g.db'}"
    open_store(db)  # migrated here: the commands below find it at the newest revision
    (tmp_path / "one.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:one\r\n"
        "DTSTART:20270503T090000Z\r\nDTEND:20270503T100000Z\r\nSUMMARY:One\r\nEND:VEVENT\r\n"
        "END:VCALENDAR\r\n")
    commands = [
        *HELP,
        ["users", "add", "zed", "--password", "pw"], ["users", "set", "zed", "--name", "Zed"],
        ["users", "list"],
        ["agenda", "add", "--user", "zed", "--subject", "x", "--start", "2027-05-03 10:00"],
        ["agenda", "import", "--user", "zed", str(tmp_path / "one.ics")],
        ["agenda", "list", "--user", "zed"], ["agenda", "delete", "--user", "zed", "1"],
        ["agenda", "list", "--user", "nobody"],
        # the control: these do load what they use, so the probe can see a library
        ["google", "status", "--user", "zed"],
        ["outlook", "status", "--user", "zed"],
    ]
    env = {"GESTAN_BRIDGE_DB": db, "PATH": "/usr/bin:/bin",
           "GESTAN_BRIDGE_TOKEN_DIR": str(tmp_path / "tokens"),
           "GESTAN_BRIDGE_BCRYPT_ROUNDS": "4"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(libraries=LIBRARIES + DATABASE),
         json.dumps(commands)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = {args: (code, loaded) for args, code, loaded in json.loads(done.stdout)}
    for args in map(" ".join, HELP):
        assert seen[args] == (0, []), f"'gestan-bridge {args}' imported {seen[args][1]}"
    for args, (code, loaded) in seen.items():
        if args.startswith(("google", "outlook")):
            continue
        assert code == (1 if "nobody" in args else 0), args
        assert set(loaded) <= set(DATABASE), f"'gestan-bridge {args}' imported {loaded}"
    assert "sqlalchemy" in seen["users list"][1], "the probe sees a database library"
    assert "google" in seen["google status --user zed"][1]
    assert "msal" in seen["outlook status --user zed"][1]

