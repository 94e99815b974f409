"""The server honours its file (issue 11): ``hosts``, ``max_connections``, ``timeout``, one
body limit, the database of ``[gestan]``; the sync triggers log in through Radicale's own
authentication; the start is two lines of banner, Radicale's chatter at debug, and a busy port
is one line naming the address."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.server import Server, describe_database, load_configuration, setup_logging
from bridge.store import Store, open_store
from tests.clirun import script
from tests.conftest import sqlite_at_head

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def office(tmp_path) -> Store:
    store = open_store(sqlite_at_head(tmp_path / "office.db"))
    store.add_user("alice", "alice", timezone="Europe/Paris")
    return store


@contextlib.contextmanager
def serving(tmp_path: Path, store: Store, text: str,
            address: tuple[str, int] | None = ("127.0.0.1", 0)) -> Iterator[Server]:
    conf = tmp_path / "served.conf"
    conf.write_text(f"[gestan]\ndb_url = {store.url}\n{text}")
    server = Server(load_configuration(conf), address).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_files_hosts_and_database_are_the_servers(tmp_path, office):
    port = free_port()
    with serving(tmp_path, office, f"[server]\nhosts = 127.0.0.1:{port}\n", None) as server:
        assert server.url == f"http://127.0.0.1:{port}/"
        answer = requests.get(f"{server.url}alice/rendez-vous/", auth=("alice", "alice"),
                              timeout=10)
        assert answer.status_code == 200, "alice exists in the file's database only"


def test_max_connections_holds_the_next_client_until_one_finishes(tmp_path, office):
    with serving(tmp_path, office, "[server]\nmax_connections = 1\ntimeout = 10\n") as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        first = socket.create_connection(("127.0.0.1", port))
        first.sendall(b"GET /.web/ HTTP/1.0\r\n")  # the headers are not finished
        time.sleep(0.3)
        second = socket.create_connection(("127.0.0.1", port))
        second.sendall(b"GET /.web/ HTTP/1.0\r\n\r\n")
        second.settimeout(0.5)
        with pytest.raises(TimeoutError):
            second.recv(100)
        first.sendall(b"\r\n")
        first.settimeout(5)
        assert first.recv(100).startswith(b"HTTP/1.0 ")
        second.settimeout(5)
        assert second.recv(100).startswith(b"HTTP/1.0 "), "served once the first was done"
        first.close()
        second.close()


def test_a_silent_connection_is_closed_after_timeout(tmp_path, office):
    with serving(tmp_path, office, "[server]\ntimeout = 0.5\n") as server:
        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        with socket.create_connection(("127.0.0.1", port)) as silent:
            silent.settimeout(5)
            began = time.monotonic()
            assert silent.recv(100) == b""
            assert 0.4 < time.monotonic() - began < 3


def test_one_body_limit_for_caldav_and_the_triggers(tmp_path, office):
    def event(size: int) -> bytes:
        return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:b1\r\n"
                "DTSTART:20270101T100000Z\r\nDTEND:20270101T110000Z\r\nSUMMARY:s\r\n"
                f"DESCRIPTION:{'x' * size}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()

    with serving(tmp_path, office, "[server]\nmax_content_length = 20000\n") as server:
        url = f"{server.url}alice/rendez-vous/"
        auth = ("alice", "alice")
        too_big = requests.put(url + "b1.ics", data=event(30000), auth=auth, timeout=10)
        assert too_big.status_code == 413 and "larger than 20000 bytes" in too_big.text
        report = requests.request("REPORT", url, data=b"<x/>" * 8000, auth=auth, timeout=10)
        assert report.status_code == 413
        trigger = requests.post(f"{server.url}bridge/sync/open", auth=auth, timeout=10,
                                json={"pad": "x" * 30000})
        assert trigger.status_code == 413
        assert trigger.json() == {"status": "refused", "exit_code": 2, "runs": [],
                                  "error": "request body too large"}
        assert office.agenda("alice") == []
        fits = requests.put(url + "b1.ics", data=event(15000), auth=auth, timeout=10)
        assert fits.status_code == 201


def test_the_triggers_log_in_through_radicale(tmp_path, office):
    """The same users as CalDAV (with Radicale's login rules), its realm, its delay."""
    settings = "[auth]\nlc_username = True\nrealm = Gestan office\ndelay = 0.3\n"
    with serving(tmp_path, office, settings) as server:
        trigger = f"{server.url}bridge/sync/open"
        upper = requests.post(trigger, auth=("ALICE", "alice"), timeout=10)
        assert upper.status_code == 422, "logged in as alice (who has no target set up)"
        assert "alice has no calendar to sync with" in upper.json()["error"]
        anonymous = requests.post(trigger, timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="Gestan office"'
        assert anonymous.json()["error"] == "credentials required"
        for method, url in (("POST", trigger), ("PROPFIND", f"{server.url}alice/")):
            began = time.monotonic()
            wrong = requests.request(method, url, auth=("alice", "guess"), timeout=10)
            assert wrong.status_code == 401 and time.monotonic() - began >= 0.3, method
        assert wrong.reason == "Unauthorized"
        refused = requests.post(trigger, auth=("alice", "guess"), timeout=10).json()
        assert (refused["status"], refused["error"]) == ("refused", "wrong login or password")


@pytest.mark.parametrize("source, counted", [("X-Remote-Addr", "198.51.100.23"),
                                             ("REMOTE_ADDR", "127.0.0.1")])
def test_failed_logins_count_the_address_radicale_is_told_to_trust(tmp_path, office, caplog,
                                                                   source, counted):
    caplog.set_level(logging.INFO, logger="gestan_bridge")
    with serving(tmp_path, office, f"[auth]\nremote_ip_source = {source}\ndelay = 0\n") \
            as server:
        requests.get(f"{server.url}alice/", auth=("alice", "guess"), timeout=10,
                     headers={"X-Remote-Addr": "198.51.100.23"})
    assert f"failed login 'alice' from {counted}" in caplog.text


def test_radicale_start_up_chatter_is_at_debug(tmp_path, office, caplog):
    """Fifty lines at INFO and a warning caused by the shipped file, before."""
    conf = tmp_path / "shipped.conf"
    conf.write_text((REPO / "radicale.conf").read_text())
    caplog.set_level(logging.INFO, logger="radicale")
    Server(load_configuration(conf, office.url), ("127.0.0.1", 0)).stop()
    assert [r.getMessage() for r in caplog.records if r.name == "radicale"] == []
    caplog.set_level(logging.DEBUG, logger="radicale")
    Server(load_configuration(conf, office.url), ("127.0.0.1", 0)).stop()
    shown = [r for r in caplog.records if r.name == "radicale"]
    assert shown and {r.levelname for r in shown} == {"DEBUG"}


def test_the_banner_names_the_database_never_its_password(tmp_path, office):
    assert describe_database("postgresql+psycopg://gestan:s3cret@db.example:5433/agenda") \
        == "PostgreSQL database agenda on db.example:5433 as gestan"
    with serving(tmp_path, office, "[web]\ntype = none\n") as server:
        first, second = server.banner().splitlines()
    assert first.endswith(f"SQLite file {tmp_path / 'office.db'}")
    assert second.startswith(f"phones: {server.url} ") and second.endswith("web UI off")


def test_serve_starts_on_its_file_and_a_busy_port_is_one_line(tmp_path, office):
    """The installed command: the file's address and database (no ./gestan.db made), the
    banner, no start-up chatter at info; a second server on the port fails naming it."""
    port = free_port()
    conf = tmp_path / "radicale.conf"
    conf.write_text(f"[server]\nhosts = 127.0.0.1:{port}\n[gestan]\ndb_url = {office.url}\n"
                    "[logging]\nlevel = info\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GESTAN_BRIDGE_DB", None)
    running = subprocess.Popen([script(), "serve", "--config", str(conf)], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = [running.stdout.readline(), running.stdout.readline()]
        assert f"SQLite file {tmp_path / 'office.db'}" in banner[0], banner
        assert f"phones: http://127.0.0.1:{port}/ " in banner[1]
        assert requests.get(f"http://127.0.0.1:{port}/alice/rendez-vous/",
                            auth=("alice", "alice"), timeout=10).status_code == 200
        busy = subprocess.run([script(), "serve", "--config", str(conf)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=60)
        assert busy.returncode == 1
        assert busy.stderr == (f"gestan-bridge: error: cannot listen on 127.0.0.1:{port}: "
                               "address already in use\n")
    finally:
        running.send_signal(signal.SIGINT)
        try:
            _, errors = running.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            running.send_signal(signal.SIGQUIT)  # its threads' stacks, to see what it waits for
            time.sleep(2)
            running.kill()
            _, errors = running.communicate(timeout=10)
            raise AssertionError(f"serve did not stop on SIGINT:\n{errors[-6000:]}") from None
    assert running.returncode == 0, errors
    assert "max_content_length set to" not in errors and "Traceback" not in errors
    assert not (work / "gestan.db").exists()


def test_the_log_level_is_the_command_lines_else_the_files(tmp_path):
    conf = tmp_path / "quiet.conf"
    conf.write_text("[logging]\nlevel = warning\n")
    ours, radicales = logging.getLogger("gestan_bridge"), logging.getLogger("radicale")
    before = ours.level, radicales.level
    try:
        setup_logging(load_configuration(conf))
        assert (ours.level, radicales.level) == (logging.WARNING, logging.WARNING)
        setup_logging(load_configuration(conf), "debug")
        assert (ours.level, radicales.level) == (logging.DEBUG, logging.DEBUG)
    finally:
        ours.setLevel(before[0])
        radicales.setLevel(before[1])


def test_one_log_line_per_request_at_info(tmp_path, office, caplog):
    """Radicale logs "received", "Successful login" and "response status" lines at INFO:
    only the last stays."""
    setup_logging(None, "info")
    caplog.set_level(logging.INFO, logger="radicale")
    with serving(tmp_path, office, "[web]\ntype = none\n") as server:
        caplog.clear()
        answer = requests.get(f"{server.url}alice/rendez-vous/", auth=("alice", "alice"),
                              timeout=10)
        assert answer.status_code == 200
    lines = [r.getMessage() for r in caplog.records
             if r.name == "radicale" and r.levelno >= logging.INFO]
    assert len(lines) == 1 and "response status" in lines[0] and "200" in lines[0], lines
    assert "/alice/rendez-vous/" in lines[0]


def test_the_server_answers_when_the_process_holds_over_1024_files(tmp_path, office):
    """A long-lived process (or a test worker) passes file descriptor 1023: ``select``
    refused such sockets and the serve loop died, every later connection refused."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1400:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with serving(tmp_path, office, "[web]\ntype = none\n") as server:
            for _ in range(3):
                answer = requests.get(f"{server.url}alice/rendez-vous/",
                                      auth=("alice", "alice"), timeout=10)
                assert answer.status_code == 200
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_serve_stops_gracefully_on_sigint_and_sigterm(tmp_path, office, signum):
    """Found by CI: a `serve` started by a parent that ignores SIGINT (a pytest worker did)
    ignored it too, and a SIGTERM (systemd, docker stop) killed it without its shutdown.
    Both now stop it, exit status 0."""
    port = free_port()
    conf = tmp_path / "radicale.conf"
    conf.write_text(f"[server]\nhosts = 127.0.0.1:{port}\n[gestan]\ndb_url = {office.url}\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GESTAN_BRIDGE_DB", None)
    running = subprocess.Popen(
        [script(), "serve", "--config", str(conf)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert running.stdout.readline().startswith("gestan-bridge serving")
        running.send_signal(signum)
        _, errors = running.communicate(timeout=20)
    finally:
        running.kill()
    assert running.returncode == 0, errors
