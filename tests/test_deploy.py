"""deploy/: the systemd units, the container image, the compose file and the nginx example.

Nothing is built that cannot run here (no Docker daemon, no systemd as PID 1): the units go
through ``systemd-analyze verify`` and ``security`` where it exists, the compose file and the
Dockerfile through a parser and the checks an administrator would make, every command line
they hold through our own CLI's parser, and the nginx example runs for real in front of a
server on 127.0.0.1, a phone discovering its calendar and writing through it over TLS.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import caldav
import pytest
import requests
import yaml

from bridge.server import Server, load_configuration
from bridge.store import open_store
from bridge.store.users import LoginGuard
from tests.clirun import invoke, script
from tests.conftest import PASSWORDS, REPO, RunningServer

DEPLOY = REPO / "deploy"
UNITS = ("gestan-bridge.service", "gestan-bridge-backup.service", "gestan-bridge-backup.timer")
INSTALLED_SCRIPT = "/opt/gestan-bridge/venv/bin/gestan-bridge"
ENVIRONMENT_FILE = "/etc/gestan-bridge/environment"
STATE_DIR = "/var/lib/gestan-bridge"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def need(tool: str, *extra_paths: str) -> str:
    """The tool's path; the test is skipped without it (failed under CI, which installs it
    with .ci/install-tools.sh)."""
    found = shutil.which(tool) or next((p for p in extra_paths if os.access(p, os.X_OK)), None)
    if found:
        return found
    if in_ci():
        pytest.fail(f"{tool} is required in CI (.ci/install-tools.sh installs it)")
    pytest.skip(f"{tool} not installed (bash .ci/install-tools.sh)")


def accepted_by_cli(args: list[str]) -> None:
    """``gestan-bridge ARGS`` parses (an unknown option or command fails; ``--help`` stops
    before the options' values are used)."""
    result = invoke({}, *args, "--help")
    assert result.returncode == 0, f"gestan-bridge {shlex.join(args)}: {result.stderr}"


# ------------------------------------------------------------------ systemd
def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections as (key, value) lists: keys may repeat, unlike INI's."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and "=" in line, f"{path.name}: not a unit line: {line!r}"
        key, value = line.split("=", 1)
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def environment_file() -> dict[str, str]:
    entries = {}
    for line in (DEPLOY / "environment").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            assert key == key.strip() and value == value.strip(), line
            entries[key] = value
    return entries


def test_the_units_run_gestan_bridge_as_its_own_user_hardened():
    service = unit_entries(DEPLOY / "gestan-bridge.service")["Service"]
    for key, expected in [("User", "gestan-bridge"), ("NoNewPrivileges", "yes"),
                          ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                          ("PrivateTmp", "yes"), ("PrivateDevices", "yes"),
                          ("PrivateUsers", "yes"), ("ProtectKernelTunables", "yes"),
                          ("ProtectControlGroups", "yes"), ("RestrictSUIDSGID", "yes"),
                          ("CapabilityBoundingSet", ""), ("UMask", "0077"),
                          ("StateDirectory", "gestan-bridge"),
                          ("EnvironmentFile", ENVIRONMENT_FILE)]:
        assert values(service, key) == [expected], key
    [exec_start] = values(service, "ExecStart")
    command = shlex.split(exec_start)
    assert command[:2] == [INSTALLED_SCRIPT, "serve"]
    assert command[command.index("--host") + 1] == "127.0.0.1"  # the proxy is in front
    accepted_by_cli(command[1:])

    backup = unit_entries(DEPLOY / "gestan-bridge-backup.service")["Service"]
    assert values(backup, "EnvironmentFile") == [ENVIRONMENT_FILE]  # the same database
    timer = unit_entries(DEPLOY / "gestan-bridge-backup.timer")
    assert values(timer["Timer"], "OnCalendar") and values(timer["Install"], "WantedBy")

    environment = environment_file()
    assert environment["GESTAN_BRIDGE_DB"] == f"sqlite:///{STATE_DIR}/gestan.db"
    assert environment["GESTAN_BRIDGE_TOKEN_DIR"].startswith(STATE_DIR + "/")


@pytest.fixture
def units_here(tmp_path: Path) -> Path:
    """The units with this checkout's script and environment file (verify wants them to
    exist), nothing else changed."""
    for name in UNITS:
        text = (DEPLOY / name).read_text()
        assert INSTALLED_SCRIPT in text or name.endswith(".timer")
        text = text.replace(INSTALLED_SCRIPT, script())
        text = text.replace(f"EnvironmentFile={ENVIRONMENT_FILE}",
                            f"EnvironmentFile={DEPLOY / 'environment'}")
        (tmp_path / name).write_text(text)
    return tmp_path


def test_systemd_verifies_the_units_and_rates_them_safe(units_here: Path):
    analyze = need("systemd-analyze")
    verified = subprocess.run([analyze, "verify", "--man=no", *UNITS], cwd=units_here,
                              capture_output=True, text=True, timeout=60)
    # an unknown or misspelt key is only a warning: no output at all is the pass
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    for name in UNITS[:2]:
        rated = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20",
                                "--no-pager", f"./{name}"], cwd=units_here,
                               capture_output=True, text=True, timeout=60)
        assert rated.returncode == 0, rated.stdout[-300:]  # exposure at most 2.0 of 10
        assert "OK" in rated.stdout.splitlines()[-1]


def as_systemd_runs_it(command: str, state: Path) -> list[str]:
    """A unit's command line as systemd hands it over (``%%`` and ``$$`` unescaped), with
    this checkout's script and ``state`` for the state directory."""
    assert not re.search(r"%[^%]", command.replace("%%", "")), "an unexpected specifier"
    command = command.replace("%%", "%").replace("$$", "$")
    command = command.replace(INSTALLED_SCRIPT, script()).replace(STATE_DIR, str(state))
    return shlex.split(command)


def test_the_nightly_backup_unit_writes_a_dated_backup_and_prunes_old_ones(tmp_path):
    """The backup unit's own command lines, run: what systemd would run each night."""
    state = tmp_path / "state"
    (state / "backups").mkdir(parents=True)
    env = {**os.environ, "GESTAN_BRIDGE_DB": f"sqlite:///{state / 'gestan.db'}",
           "GESTAN_BRIDGE_TOKEN_DIR": str(state / "tokens")}
    open_store(env["GESTAN_BRIDGE_DB"]).add_user("alice", PASSWORDS["alice"])
    old = state / "backups" / "gestan-bridge-2020-01-01.tar.gz"
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    service = unit_entries(DEPLOY / "gestan-bridge-backup.service")["Service"]
    for key in ("ExecStart", "ExecStartPost"):
        [command] = values(service, key)
        done = subprocess.run(as_systemd_runs_it(command, state), env=env, cwd=state,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{key}: {done.stderr}"
    [made] = [p.name for p in (state / "backups").iterdir()]
    assert made == f"gestan-bridge-{date.today():%Y-%m-%d}.tar.gz"
    assert stat.S_IMODE((state / "backups" / made).stat().st_mode) == 0o600


def test_the_admin_wrapper_is_valid_shell():
    wrapper = DEPLOY / "gestan-bridge-admin"
    assert os.access(wrapper, os.X_OK)
    text = wrapper.read_text()
    assert ENVIRONMENT_FILE in text and INSTALLED_SCRIPT in text
    assert subprocess.run(["sh", "-n", str(wrapper)]).returncode == 0


# ------------------------------------------------------------------ container
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of deploy/Dockerfile, continuation lines joined."""
    instructions, pending = [], ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
        pending = ""
    return instructions


def one(instructions: list[tuple[str, str]], word: str) -> str:
    found = [rest for name, rest in instructions if name == word]
    assert len(found) == 1, f"{word}: {found}"
    return found[0]


def test_the_image_installs_the_checkout_and_runs_unprivileged():
    instructions = dockerfile()
    base = one(instructions, "FROM")
    assert re.fullmatch(r"python:3\.1[1-9]-slim-\w+", base), base  # pinned, no :latest
    assert one(instructions, "USER") not in ("root", "0")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") - 1:].count("*") == 1  # everything excluded, then...
    for name, rest in instructions:
        if name == "COPY":
            *sources, _dest = rest.split()
            for source in sources:
                assert (REPO / source).exists(), source
                assert f"!{source}" in ignore or f"!{source}/" in ignore, source  # ...sent
    entry = json.loads(one(instructions, "ENTRYPOINT"))
    command = json.loads(one(instructions, "CMD"))
    assert entry == ["gestan-bridge"] and command[0] == "serve"
    accepted_by_cli(command)
    port = command[command.index("--port") + 1]
    assert one(instructions, "EXPOSE") == port
    env = dict(re.findall(r"(\w+)=(\S+)", one(instructions, "ENV")))
    volume = json.loads(one(instructions, "VOLUME"))[0]
    assert env["GESTAN_BRIDGE_DB"] == f"sqlite:///{volume}/gestan.db"
    assert env["GESTAN_BRIDGE_TOKEN_DIR"].startswith(volume + "/")
    assert one(instructions, "HEALTHCHECK").startswith("--interval")


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def healthcheck_of_image() -> list[str]:
    rest = one(dockerfile(), "HEALTHCHECK")
    return json.loads(rest[rest.index("CMD") + 3:])


def test_compose_runs_the_image_on_a_healthy_postgresql():
    spec = compose()
    services, declared = spec["services"], set(spec["volumes"])
    assert set(services) == {"db", "bridge"}
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
        assert service["restart"] == "unless-stopped"
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in declared, f"{name}: undeclared volume {mount}"
    db, bridge = services["db"], services["bridge"]
    assert any(m.endswith(":/var/lib/postgresql/data") for m in db["volumes"])
    assert bridge["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert bridge["healthcheck"]["test"][1:] == healthcheck_of_image()
    build = bridge["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    for port in bridge["ports"]:
        assert port.startswith("127.0.0.1:"), port  # only the reverse proxy reaches it
    url = bridge["environment"]["GESTAN_BRIDGE_DB"]
    password = db["environment"]["POSTGRES_PASSWORD"]
    user, database = db["environment"]["POSTGRES_USER"], db["environment"]["POSTGRES_DB"]
    assert url == f"postgresql+psycopg://{user}:{password}@db:5432/{database}"
    assert password.startswith("${") and ":?" in password  # refused when unset
    assert any(m.endswith(":/data") for m in bridge["volumes"])
    # pg_dump in the image (Debian bookworm: 15) must not be older than the server
    assert db["image"].startswith("postgres:15-")
    assert one(dockerfile(), "FROM").endswith("-bookworm")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_health_check_passes_on_a_server_and_fails_without_one(server):
    command = healthcheck_of_image()
    assert command[0] == "python" and "127.0.0.1:5232" in command[2]
    port = server.url.rstrip("/").rsplit(":", 1)[1]
    here = [sys.executable, command[1], command[2].replace(":5232", f":{port}")]
    assert subprocess.run(here, capture_output=True, timeout=30).returncode == 0
    closed = [sys.executable, command[1], command[2].replace(":5232", f":{free_port()}")]
    assert subprocess.run(closed, capture_output=True, timeout=30).returncode != 0


# ------------------------------------------------------------------ nginx
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def render_site(site: str, upstream: int, https: int, http: int, cert: Path, key: Path
                ) -> str:
    """The example with this machine's ports and a throwaway certificate; each change is
    checked to apply exactly once, so the example cannot drift from what is tested."""
    changes = [
        (r"^(\s*)listen 443 ssl;$", rf"\g<1>listen 127.0.0.1:{https} ssl;"),
        (r"^(\s*)listen 80;$", rf"\g<1>listen 127.0.0.1:{http};"),
        (r"^\s*listen \[::\]:443 ssl;\n", ""),
        (r"^\s*listen \[::\]:80;\n", ""),
        (r"^(\s*ssl_certificate)\s+\S+;$", rf"\g<1> {cert};"),
        (r"^(\s*ssl_certificate_key)\s+\S+;$", rf"\g<1> {key};"),
        (r"proxy_pass http://127\.0\.0\.1:5232/;", f"proxy_pass http://127.0.0.1:{upstream}/;"),
    ]
    for pattern, replacement in changes:
        site, count = re.subn(pattern, replacement, site, flags=re.MULTILINE)
        assert count == 1, f"{pattern!r} matched {count} times in the nginx example"
    assert "listen" not in re.sub(r"listen 127\.0\.0\.1:\d+( ssl)?;", "", site)
    return site


@dataclass
class Proxy:
    url: str   # https://127.0.0.1:PORT/
    ca: str    # the throwaway certificate to trust


def behind_the_proxy(conf: str) -> str:
    """radicale.conf as README's "Reverse proxy" says to set it there: the commented
    ``remote_ip_source`` line taken in (checked to apply exactly once)."""
    conf, count = re.subn(r"^# (remote_ip_source = X-Remote-Addr)$", r"\g<1>", conf,
                          flags=re.MULTILINE)
    assert count == 1, "radicale.conf lost its commented remote_ip_source line"
    return conf


@pytest.fixture
def proxied(store, tmp_path: Path) -> Iterator[RunningServer]:
    """A server on the shipped radicale.conf set up for the proxy in front of it."""
    conf = tmp_path / "radicale.conf"
    conf.write_text(behind_the_proxy((REPO / "radicale.conf").read_text()))
    configuration = load_configuration(conf, store.url, "127.0.0.1", 0,
                                       overrides={"auth": {"delay": "0.01"}})
    assert configuration.get("auth", "remote_ip_source") == "X-Remote-Addr"
    running = Server(configuration, ("127.0.0.1", 0)).start()
    try:
        yield RunningServer(running.url, store)
    finally:
        running.stop()


@pytest.fixture
def nginx(proxied, tmp_path: Path) -> Iterator[Proxy]:
    """nginx with deploy/nginx/gestan-bridge.conf in front of ``proxied``."""
    binary = need("nginx", "/usr/sbin/nginx")
    from tests.fakes.graph import make_certificate

    cert, key = make_certificate(tmp_path)
    https, http = free_port(), free_port()
    upstream = int(proxied.url.rstrip("/").rsplit(":", 1)[1])
    site = tmp_path / "site.conf"
    site.write_text(render_site((DEPLOY / "nginx" / "gestan-bridge.conf").read_text(),
                                upstream, https, http, cert, key))
    temp = {name: tmp_path / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\npid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        "worker_processes 1;\nevents { worker_connections 64; }\nhttp {\n"
        f"  access_log {tmp_path / 'access.log'};\n"
        + "".join(f"  {name}_temp_path {path};\n" for name, path in temp.items()
                  if name != "body")
        + f"  client_body_temp_path {temp['body']};\n  include {site};\n}}\n")
    base = [binary, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)]
    checked = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(base, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", https)) == 0:
                    break
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.02)
        yield Proxy(f"https://127.0.0.1:{https}/", str(cert))
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_phone_finds_and_writes_its_calendar_through_the_nginx_example(proxied, nginx):
    server = proxied
    url, ca = nginx.url, nginx.ca
    auth = ("alice", PASSWORDS["alice"])
    # discovery at the host's root goes to the prefix, keeping the host and port asked
    found = requests.request("PROPFIND", url + ".well-known/caldav", auth=auth,
                             verify=ca, allow_redirects=False)
    assert found.status_code == 301 and found.headers["Location"] == "/gestan/"
    client = caldav.DAVClient(url=url + ".well-known/caldav", username="alice",
                              password=PASSWORDS["alice"], ssl_verify_cert=ca)
    principal = client.principal()
    assert principal.url.path == "/gestan/alice/"  # every href carries the prefix
    [calendar] = principal.calendars()
    assert calendar.url.path == "/gestan/alice/rendez-vous/"
    calendar.save_event(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//phone//EN\r\nBEGIN:VEVENT\r\n"
        "UID:through-proxy\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20300105T090000Z\r\n"
        "DTEND:20300105T100000Z\r\nSUMMARY:Via nginx\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    stored = server.store.agenda("alice", datetime(2030, 1, 1), datetime(2031, 1, 1))
    assert [a.event.subject for a in stored] == ["Via nginx"]
    [event] = calendar.events()  # a sync through the proxy reads it back
    assert str(event.icalendar_component["UID"]) == "through-proxy"
    # Gestan's hook through the proxy: the sync trigger answers its JSON (nothing set up)
    hook = requests.post(url + "gestan/bridge/sync/open", auth=auth, verify=ca, timeout=30)
    assert hook.status_code == 422 and hook.json()["status"] == "stopped"
    assert requests.get(url + "gestan", verify=ca, allow_redirects=False
                        ).headers["Location"] == "/gestan/"


def from_address(address: str, ca: str) -> requests.Session:
    """A client whose connections leave from ``address`` (127.0.0.0/8 is all loopback):
    nginx sees another client for each."""
    class Bound(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, source_address=(address, 0), **kwargs)

    session = requests.Session()
    session.mount("https://", Bound())
    session.trust_env = False  # $REQUESTS_CA_BUNDLE would win over ``verify``
    session.verify = ca
    return session


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_failed_logins_through_the_nginx_example_are_counted_per_client(proxied, nginx,
                                                                        caplog):
    """Behind the proxy the server sees only 127.0.0.1; the example's X-Remote-Addr and
    radicale.conf's remote_ip_source tell the clients apart: a guesser of unknown logins is
    stopped at its address, another client (and a real user at the guesser's) are not."""
    caplog.set_level(logging.INFO, logger="gestan_bridge")
    limit = inspect.signature(LoginGuard).parameters["per_address"].default
    guesser, neighbour = from_address("127.0.0.2", nginx.ca), from_address("127.0.0.3",
                                                                           nginx.ca)
    home = nginx.url + "gestan/"
    for n in range(limit):
        assert guesser.request("PROPFIND", home, auth=(f"guess{n}", "x")).status_code == 401
    assert guesser.request("PROPFIND", home, auth=("guess-more", "x")).status_code == 401
    assert neighbour.request("PROPFIND", home, auth=("guess-more", "x")).status_code == 401
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name == "gestan_bridge")
    assert "login 'guess-more' from 127.0.0.2 refused: too many failed logins" in ours
    assert "failed login 'guess-more' from 127.0.0.3" in ours
    assert "from 127.0.0.1" not in ours  # never the proxy's own address
    alice = guesser.request("PROPFIND", home + "alice/", auth=("alice", PASSWORDS["alice"]),
                            headers={"Depth": "0"})
    assert alice.status_code == 207  # an office behind one address keeps working
    # a client cannot choose its address: nginx replaces the header it sends
    forged = neighbour.request("PROPFIND", home, auth=("forged", "x"),
                               headers={"X-Remote-Addr": "127.0.0.2"})
    assert forged.status_code == 401
    assert "failed login 'forged' from 127.0.0.3" in caplog.text
    assert "failed login 'forged' from 127.0.0.2" not in caplog.text


def test_plain_http_is_only_a_redirect_to_https():
    site = (DEPLOY / "nginx" / "gestan-bridge.conf").read_text()
    plain = site[site.rindex("server {"):]
    assert "listen 80;" in plain and "return 301 https://$host$request_uri;" in plain
    assert "proxy_pass" not in plain
