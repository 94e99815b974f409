"""``gestan-bridge backup`` / ``restore``: every row and token file comes back, on SQLite and
on PostgreSQL; a restore never overwrites data unasked and changes nothing when it fails;
every failure is one line and a non-zero exit."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bridge.ical.timezones import local_to_utc
from bridge.store import EventData, Store, open_store
from bridge.store.schema import metadata
from tests.clirun import invoke, run_script
from tests.conftest import PASSWORDS


def fill(store: Store) -> None:
    """Something of every kind: settings, an appointment, a weekly series of five, a sync
    run."""
    store.set_user("alice", settings={"google_calendar": "Gestan RDV", "sync_days_back": 7})
    day = date.today() + timedelta(days=7)
    start = local_to_utc(datetime.combine(day, time(14, 30)), "Europe/Paris")
    store.add_action("alice", EventData(start, start + timedelta(hours=1), "Europe/Paris",
                                        subject="Dentiste", location="Lyon"))
    store.put_object("alice", "weekly-1.ics", (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//phone//EN\r\nBEGIN:VEVENT\r\n"
        "UID:weekly-1\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;TZID=Europe/Paris:{day:%Y%m%d}T090000\r\n"
        f"DTEND;TZID=Europe/Paris:{day:%Y%m%d}T100000\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=5\r\nSUMMARY:Équipe\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
    alice = store.require_user("alice")
    run = store.start_run(alice.id, "google", "close", False)
    store.finish_run(run, "ok", "", {"created": 1})


def everything(url: str) -> dict[str, list]:
    """Every row of every table (and the schema revision), in a stable order."""
    with open_store(url).reading() as conn:
        rows = {table.name: sorted(map(tuple, conn.execute(table.select())), key=repr)
                for table in metadata.sorted_tables}
        rows["alembic_version"] = list(conn.execute(text("SELECT * FROM alembic_version")))
    return rows


@pytest.fixture
def other_url(db_url: str, request, tmp_path: Path) -> Iterator[str]:
    """A second, empty database of the same kind, for restoring into."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    """A token directory as the connect commands leave it."""
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o700)
    for name, content in [("alice.json", b'{"refresh_token": "r-alice"}'),
                          ("bob.outlook.json", b'{"password": "p-bob"}'),
                          (".alice.json.123.tmp", b"half written")]:
        (directory / name).write_bytes(content)
        (directory / name).chmod(0o600)
    return directory


def cli(*args: str, tokens: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    if tokens is not None:
        env["GESTAN_BRIDGE_TOKEN_DIR"] = str(tokens)
    return invoke(env, *args)


def one_line_failure(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr.startswith("gestan-bridge: error: "), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_backup_and_restore_give_back_every_row_and_token_file(store, other_url, tokens,
                                                               tmp_path):
    fill(store)
    archive = tmp_path / "backup.tar.gz"
    made = cli("backup", str(archive), "--db", store.url, tokens=tokens)
    assert made.returncode == 0, made.stderr
    assert "3 users, 6 appointments" in made.stdout and "2 token files" in made.stdout
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # it holds secrets
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gestan-bridge-")]

    elsewhere = tmp_path / "new-machine" / "tokens"
    restored = cli("restore", str(archive), "--db", other_url, tokens=elsewhere)
    assert restored.returncode == 0, restored.stderr
    assert "2 token files" in restored.stdout
    assert everything(other_url) == everything(store.url)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["alice.json", "bob.outlook.json"]
    for path in elsewhere.iterdir():
        assert path.read_bytes() == (tokens / path.name).read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o700
    # the restored store works as the original did: logins, the phone's calendar
    copy = open_store(other_url)
    alice = copy.authenticate("alice", PASSWORDS["alice"])
    assert alice is not None and alice.settings["google_calendar"] == "Gestan RDV"
    original_id = store.require_user("alice").id
    assert [(o.href, o.etag) for o in copy.calendar_listing(alice.id)] == \
        [(o.href, o.etag) for o in store.calendar_listing(original_id)]


def test_restore_refuses_a_database_with_data_unless_forced(store, other_url, tmp_path):
    fill(store)
    archive = tmp_path / "backup.tar.gz"
    assert cli("backup", str(archive), "--no-tokens", "--db", store.url).returncode == 0
    target = open_store(other_url)
    target.add_user("zoe", "zoe-password")
    before = everything(other_url)
    refused = cli("restore", str(archive), "--db", other_url)
    one_line_failure(refused, "not empty", "users: 1", "--force")
    assert everything(other_url) == before
    forced = cli("restore", str(archive), "--force", "--db", other_url)
    assert forced.returncode == 0, forced.stderr
    assert everything(other_url) == everything(store.url)  # zoe is gone, as in the backup


def test_a_server_started_once_counts_as_empty(store, other_url, tmp_path):
    """Empty tables (a server that started, nobody added) are replaced without --force."""
    archive = tmp_path / "backup.tar.gz"
    assert cli("backup", str(archive), "--db", store.url).returncode == 0
    open_store(other_url)  # the schema, no rows
    assert cli("restore", str(archive), "--db", other_url).returncode == 0
    assert everything(other_url) == everything(store.url)


def test_a_postgresql_restore_that_fails_changes_nothing(postgres_server, tmp_path):
    source = postgres_server.create_database()
    target = postgres_server.create_database()
    fill_store = open_store(source)
    fill_store.add_user("alice", PASSWORDS["alice"])
    fill(fill_store)
    archive = tmp_path / "backup.tar.gz"
    assert cli("backup", str(archive), "--db", source).returncode == 0
    open_store(target).add_user("zoe", "zoe-password")
    with open_store(target).writing() as conn:  # something the backup's script also creates
        conn.execute(text("ALTER SEQUENCE users_id_seq OWNED BY NONE"))
    before = everything(target)
    failed = cli("restore", str(archive), "--force", "--db", target)
    one_line_failure(failed, "psql failed", "already exists", "nothing was changed")
    assert everything(target) == before
    for name in (source, target):
        postgres_server.drop_database(name.rsplit("/", 1)[1])


def test_tokens_can_be_left_out_and_are_never_replaced_unasked(tmp_path, tokens):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    open_store(url).add_user("alice", PASSWORDS["alice"])
    without = tmp_path / "without.tar.gz"
    made = cli("backup", str(without), "--no-tokens", "--db", url, tokens=tokens)
    assert made.returncode == 0 and "token files excluded" in made.stdout
    with tarfile.open(without) as tar:
        assert [m.name for m in tar.getmembers()] == ["manifest.json", "database.sqlite3"]
        assert json.load(tar.extractfile("manifest.json"))["tokens"] is False

    archive = tmp_path / "with.tar.gz"
    assert cli("backup", str(archive), "--db", url, tokens=tokens).returncode == 0
    (tokens / "alice.json").write_bytes(b'{"refresh_token": "newer"}')
    target = f"sqlite:///{tmp_path / 'other.db'}"
    refused = cli("restore", str(archive), "--db", target, tokens=tokens)
    one_line_failure(refused, "alice.json", "--force", "--no-tokens")
    assert not (tmp_path / "other.db").exists()  # refused before anything was written
    kept = cli("restore", str(archive), "--no-tokens", "--db", target, tokens=tokens)
    assert kept.returncode == 0 and "token files excluded" in kept.stdout
    assert (tokens / "alice.json").read_bytes() == b'{"refresh_token": "newer"}'
    replaced = cli("restore", str(archive), "--force", "--db", target, tokens=tokens)
    assert replaced.returncode == 0
    assert (tokens / "alice.json").read_bytes() == b'{"refresh_token": "r-alice"}'


def rewritten(archive: Path, dest: Path, manifest: dict | None = None,
              extra: tuple[str, bytes] | None = None) -> Path:
    """``archive`` with its manifest changed or a member added: what an attacker or a
    newer version could hand over."""
    with tarfile.open(archive) as src, tarfile.open(dest, "w:gz") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read()
            if member.name == "manifest.json" and manifest is not None:
                data = json.dumps({**json.loads(data), **manifest}).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))
        if extra is not None:
            info = tarfile.TarInfo(extra[0])
            info.size = len(extra[1])
            out.addfile(info, io.BytesIO(extra[1]))
    return dest


def test_every_failure_is_one_line_and_writes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    open_store(url).add_user("alice", PASSWORDS["alice"])
    good = tmp_path / "good.tar.gz"
    assert cli("backup", str(good), "--db", url).returncode == 0
    target = tmp_path / "target.db"
    restore_to = ("--db", f"sqlite:///{target}")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(os.urandom(3000))
    foreign = tmp_path / "foreign.db"
    import sqlite3

    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE notes (text)")
    cases = [
        (("backup", str(good), "--db", url), "already exists"),
        (("backup", str(tmp_path / "b.tar.gz"), "--db", f"sqlite:///{tmp_path / 'no.db'}"),
         "no database at"),
        (("backup", str(tmp_path / "b.tar.gz"), "--db", f"sqlite:///{foreign}"),
         "not a gestan-bridge database"),
        (("backup", str(tmp_path / "b.tar.gz"), "--db", "sqlite://"), "needs a database file"),
        (("backup", str(tmp_path / "b.tar.gz"), "--db", "mysql://u@h/d"), "unsupported"),
        (("backup", str(tmp_path / "nodir" / "b.tar.gz"), "--db", url), "no directory"),
        (("restore", str(tmp_path / "missing.tar.gz"), *restore_to), "no backup file"),
        (("restore", "/etc/passwd", *restore_to), "not a gestan-bridge backup"),
        (("restore", str(junk), *restore_to), "not a gestan-bridge backup"),
        (("restore", str(good), "--db", "postgresql+psycopg://u@127.0.0.1:1/d"),
         "holds a SQLite database and the target is PostgreSQL"),
        (("restore", str(rewritten(good, tmp_path / "newer.tar.gz", {"schema": "9999"})),
          *restore_to), "schema 9999, unknown to this gestan-bridge"),
        (("restore", str(rewritten(good, tmp_path / "format.tar.gz",
                                   {"format_version": 2})), *restore_to),
         "newer gestan-bridge"),
        (("restore", str(rewritten(good, tmp_path / "evil.tar.gz",
                                   extra=("tokens/../../evil", b"x"))), *restore_to),
         "unsafe token entry"),
    ]
    for args, words in cases:
        one_line_failure(cli(*args, tokens=tmp_path / "tokens"), words)
    assert not target.exists() and not (tmp_path / "b.tar.gz").exists()
    assert not (tmp_path / "tokens").exists() and not (tmp_path.parent / "evil").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gestan-bridge-")]


def test_postgresql_without_its_client_tools_is_one_line(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    url = "postgresql+psycopg://gestan:secret@127.0.0.1:1/gestan"
    result = cli("backup", str(tmp_path / "b.tar.gz"), "--db", url, PATH=str(empty))
    one_line_failure(result, "pg_dump not found", "postgresql-client")
    assert "secret" not in result.stderr


def test_the_installed_script_backs_up_and_restores(tmp_path):
    """The console script's own exit statuses (the other tests run the CLI in-process)."""
    open_store(f"sqlite:///{tmp_path / 'g.db'}").add_user("hal", "hal-password")
    env = {**os.environ, "GESTAN_BRIDGE_DB": f"sqlite:///{tmp_path / 'g.db'}",
           "GESTAN_BRIDGE_TOKEN_DIR": str(tmp_path / "tokens")}
    made = run_script(env, "backup", str(tmp_path / "b.tar.gz"))
    assert made.returncode == 0 and "1 user" in made.stdout, made.stderr
    env["GESTAN_BRIDGE_DB"] = f"sqlite:///{tmp_path / 'copy.db'}"
    restored = run_script(env, "restore", str(tmp_path / "b.tar.gz"))
    assert restored.returncode == 0, restored.stderr
    assert [u.login for u in open_store(env["GESTAN_BRIDGE_DB"]).users()] == ["hal"]
