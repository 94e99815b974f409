"""CalDAV benchmark: gestan-bridge against stock Radicale 3.9, on this machine, in one run.

Both servers run as subprocesses on 127.0.0.1 (free ports); the same deterministic
appointments (``bench/dataset.py``) are PUT one by one into ``/alice/rendez-vous/`` of each,
then every request below is timed (median of ``--repeats`` after one warm-up, gzip on as
phones ask) and every answer is checked; a wrong answer stops the run with exit code 1.

    (a) full sync-collection REPORT (empty token), getetag + calendar-data
    (b) PROPFIND Depth 1, getetag
    (c) calendar-query, VEVENT time-range over four weeks, calendar-data
    (d) calendar-multiget of 100 hrefs
    (e) incremental sync-collection after one changed PUT
    (f) PUT median of the first and of the last 100 items loaded
    and each server process's peak memory (VmHWM).

Usage: ``python -m bench.caldav_bench --n 1000 [--n 10000] [--repeats 5] [--postgresql]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/caldav_bench.py` as well as `-m bench.caldav_bench`
    sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.dataset import Appointment, expected_hrefs, generate  # noqa: E402

LOGIN = PASSWORD = "alice"
CALENDAR_NAME = "rendez-vous"
CALENDAR = f"/{LOGIN}/{CALENDAR_NAME}/"
SERVERS = ("ours", "stock")
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 300.0
START_TIMEOUT = 60.0
MULTIGET_SIZE = 100
PUT_WINDOW = 100
DAV = "{DAV:}"
CALDAV = "{urn:ietf:params:xml:ns:caldav}"

# Targets: ours / stock at most this (rows a-e); row f compares our last-100 PUT median
# with our own first-100 median.
ROWS = {
    "a_sync_full": ("(a) sync-collection, full", 0.5),
    "b_propfind": ("(b) PROPFIND depth 1 getetag", 0.5),
    "c_query_month": ("(c) calendar-query, 4 weeks", 0.5),
    "d_multiget": ("(d) calendar-multiget 100", 0.7),
    "e_sync_incremental": ("(e) sync-collection after 1 PUT", 0.05),
    "f_put_first": ("(f) PUT, first 100 loaded", None),
    "f_put_last": ("(f) PUT, last 100 loaded", None),
}
PUT_GROWTH_TARGET = 1.2

SYNC_BODY = """<?xml version="1.0" encoding="utf-8"?>
<D:sync-collection xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:sync-token>{token}</D:sync-token>
  <D:sync-level>1</D:sync-level>
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
</D:sync-collection>"""
PROPFIND_BODY = """<?xml version="1.0" encoding="utf-8"?>
<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>"""
QUERY_BODY = """<?xml version="1.0" encoding="utf-8"?>
<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
  <C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">
    <C:time-range start="{start}" end="{end}"/>
  </C:comp-filter></C:comp-filter></C:filter>
</C:calendar-query>"""
MULTIGET_BODY = """<?xml version="1.0" encoding="utf-8"?>
<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">
  <D:prop><D:getetag/><C:calendar-data/></D:prop>
{hrefs}
</C:calendar-multiget>"""
MKCALENDAR_BODY = """<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>
  <D:displayname>Rendez-vous</D:displayname>
  <C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>
</D:prop></D:set></C:mkcalendar>"""
XML = {"Content-Type": "application/xml; charset=utf-8"}
ICS = {"Content-Type": "text/calendar; charset=utf-8"}


class BenchError(Exception):
    """A wrong answer, a server that would not start, or the time bound reached."""


# ---------------------------------------------------------------- servers

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS of a process, in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                values[key] = int(rest.split()[0])
    return values


@dataclass
class ServerProcess:
    name: str
    command: list[str]
    workdir: Path
    env: dict[str, str]
    port: int
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        self.log_path = self.workdir / f"{self.name}-server.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.workdir, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} server exited with code {self.proc.returncode} "
                                 f"on start:\n{self.log_tail()}")
            try:
                requests.request("OPTIONS", self.url + "/", timeout=2)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        raise BenchError(f"{self.name} server did not answer within {START_TIMEOUT:.0f} s:\n"
                         f"{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, AttributeError):
            return ""

    def memory(self) -> dict[str, int]:
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError(f"{self.name} server is not running:\n{self.log_tail()}")
        return proc_status(self.proc.pid)

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise BenchError(f"{self.name} server died:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _venv_script(name: str) -> list[str]:
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    found = shutil.which(name)
    if found:
        return [found]
    raise BenchError(f"{name} not found next to {sys.executable} nor in PATH")


def start_ours(workdir: Path, db_url: str) -> ServerProcess:
    env = dict(os.environ, GESTAN_BRIDGE_BCRYPT_ROUNDS="4", PYTHONUNBUFFERED="1")
    env.pop("GESTAN_BRIDGE_DB", None)
    command = _venv_script("gestan-bridge")
    added = subprocess.run([*command, "users", "add", LOGIN, "--password", PASSWORD,
                            "--db", db_url], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
    if added.returncode != 0:
        raise BenchError(f"gestan-bridge users add failed: {added.stderr.strip()}")
    port = free_port()
    server = ServerProcess("ours", [*command, "serve", "--db", db_url, "--host", "127.0.0.1",
                                    "--port", str(port), "--log-level", "warning"],
                           workdir, env, port)
    return server.start()


def start_stock(workdir: Path) -> ServerProcess:
    (workdir / "users").write_text(f"{LOGIN}:{PASSWORD}\n")
    port = free_port()
    config = workdir / "radicale.conf"
    config.write_text(
        "[server]\n"
        f"hosts = 127.0.0.1:{port}\n"
        "[auth]\n"
        "type = htpasswd\n"
        f"htpasswd_filename = {workdir / 'users'}\n"
        "htpasswd_encryption = plain\n"
        "delay = 0.01\n"
        "[rights]\n"
        "type = owner_only\n"
        "[storage]\n"
        "type = multifilesystem\n"
        f"filesystem_folder = {workdir / 'collections'}\n"
        "[web]\n"
        "type = none\n"
        "[logging]\n"
        "level = warning\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server = ServerProcess("stock", [sys.executable, "-m", "radicale", "--config", str(config)],
                           workdir, env, port)
    server.start()
    with new_session() as session:
        answer = session.request("MKCALENDAR", server.url + CALENDAR, data=MKCALENDAR_BODY,
                                 headers=XML, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        if answer.status_code != 201:
            raise BenchError(f"stock MKCALENDAR {CALENDAR}: {answer.status_code} {answer.text}")
    return server


def new_session() -> requests.Session:
    session = requests.Session()
    session.auth = (LOGIN, PASSWORD)
    session.headers["Accept-Encoding"] = "gzip"
    session.trust_env = False  # 127.0.0.1 only, no proxy from the environment
    return session


# ---------------------------------------------------------------- answers

@dataclass
class Response:
    name: str  # last path segment of the href
    status: int
    etag: str | None = None
    data: str | None = None


def _status(text: str | None) -> int:
    try:
        return int((text or "").split()[1])
    except (IndexError, ValueError):
        return 0


def parse_multistatus(body: bytes) -> tuple[list[Response], str | None]:
    root = ET.fromstring(body)
    if root.tag != f"{DAV}multistatus":
        raise BenchError(f"not a multistatus answer: {root.tag}")
    found = []
    for response in root.findall(f"{DAV}response"):
        href = unquote(response.findtext(f"{DAV}href") or "")
        item = Response(href.rstrip("/").rsplit("/", 1)[-1] if href.endswith(".ics") else href,
                        _status(response.findtext(f"{DAV}status")))
        for propstat in response.findall(f"{DAV}propstat"):
            status = _status(propstat.findtext(f"{DAV}status"))
            if status != 200:
                continue
            item.status = 200
            prop = propstat.find(f"{DAV}prop")
            item.etag = prop.findtext(f"{DAV}getetag") or item.etag
            item.data = prop.findtext(f"{CALDAV}calendar-data") or item.data
        found.append(item)
    return found, root.findtext(f"{DAV}sync-token")


def unfold(text: str) -> str:
    return text.replace("\r\n ", "").replace("\n ", "").replace("\r\n\t", "")


def check(condition: bool, server: str, row: str, message: str) -> None:
    if not condition:
        raise BenchError(f"{server}: {row}: {message}")


def check_items(server: str, row: str, answers: list[Response], expected: set[str],
                by_href: dict[str, Appointment], need_data: bool, deep: bool) -> None:
    names = [a.name for a in answers]
    check(len(names) == len(expected), server, row,
          f"{len(names)} responses, expected {len(expected)}")
    missing, extra = expected - set(names), set(names) - expected
    check(not missing and not extra, server, row,
          f"hrefs differ: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
          f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    for answer in answers:
        check(answer.status == 200 and bool(answer.etag), server, row,
              f"{answer.name}: status {answer.status}, etag {answer.etag!r}")
        if need_data:
            check(bool(answer.data), server, row, f"{answer.name}: no calendar-data")
            if deep:
                uid = by_href[answer.name].uid
                check(f"UID:{uid}" in unfold(answer.data), server, row,
                      f"{answer.name}: calendar-data lacks UID {uid}")


# ---------------------------------------------------------------- timing

@dataclass
class Sample:
    seconds: float
    response: requests.Response


@dataclass
class RowResult:
    samples_ms: list[float] = field(default_factory=list)
    responses: int = 0
    bytes_gzip: int = 0
    bytes: int = 0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)

    def as_json(self) -> dict:
        return {"median_ms": round(self.median_ms, 3),
                "samples_ms": [round(s, 3) for s in self.samples_ms],
                "responses": self.responses, "bytes_gzip": self.bytes_gzip,
                "bytes": self.bytes}


class Deadline:
    def __init__(self, minutes: float) -> None:
        self.minutes = minutes
        self.end = time.monotonic() + minutes * 60

    def check(self, doing: str) -> None:
        if time.monotonic() > self.end:
            raise BenchError(f"time bound of {self.minutes:g} min reached while {doing} "
                             f"(raise --max-minutes)")


def timed(session: requests.Session, method: str, url: str, **kwargs) -> Sample:
    started = time.perf_counter()
    response = session.request(method, url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT), **kwargs)
    _ = response.content  # read and gunzipped inside the timing
    return Sample(time.perf_counter() - started, response)


def check_http(sample: Sample, server: str, row: str, expected: int = 207) -> None:
    response = sample.response
    check(response.status_code == expected, server, row,
          f"HTTP {response.status_code} (expected {expected}): {response.text[:300]}")
    if expected == 207:
        check(response.headers.get("Content-Encoding") == "gzip", server, row,
              f"answer not gzipped (Content-Encoding {response.headers.get('Content-Encoding')})")


# ---------------------------------------------------------------- one size

@dataclass
class Context:
    n: int
    repeats: int
    items: list[Appointment]
    by_href: dict[str, Appointment]
    deadline: Deadline
    console: Console
    servers: dict[str, ServerProcess] = field(default_factory=dict)
    sessions: dict[str, requests.Session] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


def load(ctx: Context, name: str, seed_dir: Path | None = None) -> None:
    """One PUT per item; with ``seed_dir`` (stock only, ``--stock-load seed``) the items
    between the first and the last 100 are written straight into Radicale's collection
    folder instead, so only the first and last 100 go over HTTP (row f still measured)."""
    session, base = ctx.sessions[name], ctx.servers[name].url + CALENDAR
    times: list[float] = []
    window = min(PUT_WINDOW, max(1, ctx.n // 2))
    seeded = range(window, ctx.n - window) if seed_dir is not None else range(0)
    started = time.perf_counter()
    for index, item in enumerate(ctx.items):
        if index in seeded:
            (seed_dir / item.href).write_bytes(item.ics().encode())
            continue
        if index % 200 == 0:
            ctx.deadline.check(f"loading {name} ({index}/{ctx.n})")
            ctx.servers[name].check_alive()
        sample = timed(session, "PUT", base + item.href, data=item.ics().encode(),
                       headers={**ICS, "If-None-Match": "*"})
        check(sample.response.status_code == 201, name, "load",
              f"PUT {item.href}: HTTP {sample.response.status_code} "
              f"{sample.response.reason}: {sample.response.text[:300]}")
        times.append(sample.seconds * 1000)
    wall = time.perf_counter() - started
    first, last = RowResult(times[:window]), RowResult(times[-window:])
    result = ctx.results[name]
    result["f_put_first"], result["f_put_last"] = first, last
    result["load"] = {"seconds": round(wall, 3), "puts": len(times), "seeded": len(seeded),
                      "median_ms": round(statistics.median(times), 3)}
    ctx.console.print(f"  loaded {ctx.n} items into {name} in {wall:.1f} s "
                      f"({len(times)} PUTs, median {statistics.median(times):.1f} ms"
                      + (f"; {len(seeded)} written as files" if seeded else "") + ")")


def measure(ctx: Context, key: str, request: Callable[[str], Sample],
            verify: Callable[[str, Sample, bool], int]) -> None:
    """Warm-up then ``repeats`` timed requests on each server, every answer verified."""
    for name in SERVERS:
        ctx.deadline.check(f"timing {key} on {name}")
        ctx.servers[name].check_alive()
        verify(name, request(name), True)  # warm-up, checked in depth
        row = RowResult()
        for _ in range(ctx.repeats):
            sample = request(name)
            row.responses = verify(name, sample, False)
            row.samples_ms.append(sample.seconds * 1000)
            row.bytes_gzip = int(sample.response.headers.get("Content-Length") or 0)
            row.bytes = len(sample.response.content)
        ctx.results[name][key] = row


def query_window(base: date) -> tuple[datetime, datetime]:
    """Four weeks from a Sunday noon (UTC) about a month ahead: no working-day item of either
    zone, all-day ones included, can straddle its ends, so every reading of the range agrees."""
    day = base + timedelta(days=30)
    day += timedelta(days=(6 - day.weekday()) % 7)
    start = datetime.combine(day, dtime(12, 0), UTC)
    return start, start + timedelta(weeks=4)


def run_size(n: int, args: argparse.Namespace, deadline: Deadline, console: Console,
             pg_server) -> dict:
    base = args.base_date or date.today()
    items = generate(n, args.seed, base)
    by_href = {item.href: item for item in items}
    all_hrefs = set(by_href)
    ctx = Context(n, args.repeats, items, by_href, deadline, console,
                  results={name: {} for name in SERVERS})
    workdir = Path(tempfile.mkdtemp(prefix=f"caldav-bench-{n}-"))
    started = time.perf_counter()
    try:
        if pg_server is not None:
            db_url = pg_server.create_database(f"bench_{n}_{os.getpid()}")
        else:
            db_url = f"sqlite:///{workdir / 'bench.db'}"
        (workdir / "ours").mkdir()
        (workdir / "stock").mkdir()
        ctx.servers["ours"] = start_ours(workdir / "ours", db_url)
        ctx.servers["stock"] = start_stock(workdir / "stock")
        for name in SERVERS:
            ctx.sessions[name] = new_session()
        console.print(f"N={n}: ours {ctx.servers['ours'].url} ({db_url.split(':')[0]}), "
                      f"stock Radicale {ctx.servers['stock'].url}, data in {workdir}")
        load(ctx, "ours")
        seed_dir = None
        if args.stock_load == "seed":
            seed_dir = workdir / "stock" / "collections" / "collection-root" / LOGIN / CALENDAR_NAME
            if not seed_dir.is_dir():
                raise BenchError(f"stock collection folder {seed_dir} not found")
        load(ctx, "stock", seed_dir)

        def url(name: str) -> str:
            return ctx.servers[name].url + CALENDAR

        # (a) full sync-collection
        def sync_full(name: str) -> Sample:
            return timed(ctx.sessions[name], "REPORT", url(name), headers={**XML, "Depth": "1"},
                         data=SYNC_BODY.format(token=""))

        def verify_sync_full(name: str, sample: Sample, deep: bool) -> int:
            check_http(sample, name, "a")
            answers, token = parse_multistatus(sample.response.content)
            check(bool(token), name, "a", "no sync-token in the answer")
            check_items(name, "a", answers, all_hrefs, by_href, True, deep)
            ctx.tokens[name] = token
            return len(answers)

        measure(ctx, "a_sync_full", sync_full, verify_sync_full)

        # (b) PROPFIND depth 1
        def propfind(name: str) -> Sample:
            return timed(ctx.sessions[name], "PROPFIND", url(name),
                         headers={**XML, "Depth": "1"}, data=PROPFIND_BODY)

        def verify_propfind(name: str, sample: Sample, deep: bool) -> int:
            check_http(sample, name, "b")
            answers, _ = parse_multistatus(sample.response.content)
            collection = [a for a in answers if not a.name.endswith(".ics")]
            check(len(collection) == 1, name, "b",
                  f"{len(collection)} collection responses, expected 1")
            check_items(name, "b", [a for a in answers if a.name.endswith(".ics")], all_hrefs,
                        by_href, False, deep)
            return len(answers)

        measure(ctx, "b_propfind", propfind, verify_propfind)

        # (c) one-month calendar-query
        start, end = query_window(base)
        expected_hits = expected_hrefs(items, start, end)
        stamp = "%Y%m%dT%H%M%SZ"
        query = QUERY_BODY.format(start=start.strftime(stamp), end=end.strftime(stamp))

        def calendar_query(name: str) -> Sample:
            return timed(ctx.sessions[name], "REPORT", url(name), headers={**XML, "Depth": "1"},
                         data=query)

        def verify_query(name: str, sample: Sample, deep: bool) -> int:
            check_http(sample, name, "c")
            answers, _ = parse_multistatus(sample.response.content)
            check_items(name, "c", answers, expected_hits, by_href, True, deep)
            return len(answers)

        measure(ctx, "c_query_month", calendar_query, verify_query)

        # (d) multiget of 100 hrefs
        picked = random.Random(f"multiget/{args.seed}/{n}").sample(
            sorted(all_hrefs), min(MULTIGET_SIZE, n))
        multiget = MULTIGET_BODY.format(hrefs="\n".join(
            f"  <D:href>{CALENDAR}{href}</D:href>" for href in picked))

        def calendar_multiget(name: str) -> Sample:
            return timed(ctx.sessions[name], "REPORT", url(name), headers={**XML, "Depth": "1"},
                         data=multiget)

        def verify_multiget(name: str, sample: Sample, deep: bool) -> int:
            check_http(sample, name, "d")
            answers, _ = parse_multistatus(sample.response.content)
            check_items(name, "d", answers, set(picked), by_href, True, True)
            return len(answers)

        measure(ctx, "d_multiget", calendar_multiget, verify_multiget)

        # (e) incremental sync-collection after one PUT
        singles = [item for item in items if not item.series]
        edits = random.Random(f"edits/{args.seed}/{n}").sample(
            singles, min(len(singles), args.repeats + 1))
        counters = {name: 0 for name in SERVERS}
        for name in SERVERS:
            ctx.deadline.check(f"timing e_sync_incremental on {name}")
            ctx.servers[name].check_alive()
            row = RowResult()
            for round_, item in enumerate(edits):
                counters[name] += 1
                version = counters[name]
                put = timed(ctx.sessions[name], "PUT", url(name) + item.href,
                            data=item.changed(version).ics().encode(), headers=ICS)
                check(put.response.status_code in (200, 201, 204), name, "e",
                      f"PUT of the changed {item.href}: HTTP {put.response.status_code} "
                      f"{put.response.text[:300]}")
                sample = timed(ctx.sessions[name], "REPORT", url(name),
                               headers={**XML, "Depth": "1"},
                               data=SYNC_BODY.format(token=ctx.tokens[name]))
                check_http(sample, name, "e")
                answers, token = parse_multistatus(sample.response.content)
                check(bool(token) and token != ctx.tokens[name], name, "e",
                      f"sync-token unchanged after a PUT ({token!r})")
                check([a.name for a in answers] == [item.href], name, "e",
                      f"expected exactly the changed href {item.href}, got "
                      f"{len(answers)}: {[a.name for a in answers][:5]}")
                check(answers[0].status == 200 and bool(answers[0].data)
                      and f"(modifié n° {version})" in unfold(answers[0].data), name, "e",
                      "the changed item's calendar-data lacks the new SUMMARY")
                ctx.tokens[name] = token
                if round_ == 0:
                    continue  # warm-up
                row.samples_ms.append(sample.seconds * 1000)
                row.responses = len(answers)
                row.bytes_gzip = int(sample.response.headers.get("Content-Length") or 0)
                row.bytes = len(sample.response.content)
            ctx.results[name]["e_sync_incremental"] = row

        for name in SERVERS:
            ctx.results[name]["memory"] = ctx.servers[name].memory()
        wall = time.perf_counter() - started
        console.print(f"  N={n} done in {wall:.0f} s; expected (c) hits: {len(expected_hits)}")
        return summarize(ctx, base, (start, end), len(expected_hits), wall, db_url)
    finally:
        for name in ("ours", "stock"):
            session = ctx.sessions.get(name)
            if session is not None:
                session.close()
            server = ctx.servers.get(name)
            if server is not None:
                server.stop()
        if args.keep:
            console.print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def summarize(ctx: Context, base: date, window: tuple[datetime, datetime], hits: int,
              wall: float, db_url: str) -> dict:
    rows = []
    for key, (label, target) in ROWS.items():
        ours, stock = ctx.results["ours"][key], ctx.results["stock"][key]
        ratio = ours.median_ms / stock.median_ms if stock.median_ms else None
        row = {"row": key, "label": label, "unit": "ms", "ours": round(ours.median_ms, 3),
               "stock": round(stock.median_ms, 3),
               "ratio": round(ratio, 4) if ratio is not None else None,
               "target": None, "pass": None}
        if target is not None:
            row["target"] = f"ours/stock ≤ {target}"
            row["pass"] = ratio is not None and ratio <= target
        if key == "f_put_last":
            growth = ours.median_ms / ctx.results["ours"]["f_put_first"].median_ms
            stock_growth = stock.median_ms / ctx.results["stock"]["f_put_first"].median_ms
            row["target"] = f"ours last/first ≤ {PUT_GROWTH_TARGET}"
            row["growth_ours"] = round(growth, 4)
            row["growth_stock"] = round(stock_growth, 4)
            row["pass"] = growth <= PUT_GROWTH_TARGET
        rows.append(row)
    mem = {name: ctx.results[name]["memory"]["VmHWM"] for name in SERVERS}
    rows.append({"row": "memory_vmhwm", "label": "peak memory VmHWM", "unit": "MiB",
                 "ours": round(mem["ours"] / 1024, 1), "stock": round(mem["stock"] / 1024, 1),
                 "ratio": round(mem["ours"] / mem["stock"], 4), "target": None, "pass": None})
    loads = {name: ctx.results[name]["load"]["seconds"] for name in SERVERS}
    seeded = ctx.results["stock"]["load"]["seeded"]
    rows.append({"row": "load_total", "label": f"load {ctx.n} PUTs (wall)", "unit": "s",
                 "ours": loads["ours"], "stock": loads["stock"],
                 "ratio": None if seeded else round(loads["ours"] / loads["stock"], 4),
                 "target": f"stock: {seeded} of {ctx.n} written as files" if seeded else None,
                 "pass": None})
    servers = {}
    for name in SERVERS:
        servers[name] = {key: (value.as_json() if isinstance(value, RowResult) else value)
                         for key, value in ctx.results[name].items()}
    return {"n": ctx.n, "repeats": ctx.repeats, "base_date": base.isoformat(),
            "backend": db_url.split(":")[0].split("+")[0],
            "query_window": [window[0].isoformat(), window[1].isoformat()],
            "expected_query_hits": hits, "wall_seconds": round(wall, 1),
            "servers": servers, "rows": rows}


# ---------------------------------------------------------------- output

def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:,.1f} ms" if value < 10_000 else f"{value / 1000:,.2f} s"
    return f"{value:,.1f} {unit}"


def print_table(console: Console, runs: list[dict]) -> None:
    table = Table(title="CalDAV: gestan-bridge (ours) vs stock Radicale 3.9 (medians)",
                  show_lines=False)
    for column, justify in (("N", "right"), ("row", "left"), ("ours", "right"),
                            ("stock", "right"), ("ours/stock", "right"), ("target", "left"),
                            ("", "left")):
        table.add_column(column, justify=justify)
    for number, run in enumerate(runs):
        if number:
            table.add_section()
        for row in run["rows"]:
            target = row["target"] or ""
            if "growth_ours" in row:
                target += (f" (ours {row['growth_ours']:.2f}, stock "
                           f"{row['growth_stock']:.2f})")
            verdict = {True: "[green]pass[/]", False: "[red]MISS[/]", None: ""}[row["pass"]]
            ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "—"
            table.add_row(f"{run['n']:,} {run['backend']}", row["label"],
                          _fmt(row["ours"], row["unit"]), _fmt(row["stock"], row["unit"]),
                          ratio, target, verdict)
    console.print(table)


# ---------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="caldav_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, action="append",
                        help="appointments to load (repeatable; default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (min 2)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--base-date", type=date.fromisoformat, default=None,
                        help="first day of the data's year (default: today)")
    parser.add_argument("--postgresql", action="store_true",
                        help="ours on a throwaway PostgreSQL (tests/pgserver.py)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results-caldav.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--max-minutes", type=float, default=120.0,
                        help="stop (exit 1) past this wall time")
    parser.add_argument("--stock-load", choices=("put", "seed"), default="put",
                        help="put: one PUT per item into stock Radicale too (its PUT is "
                        "O(collection): 10,000 items take most of an hour); seed: PUT the "
                        "first and last 100, write the others as files in its folder")
    parser.add_argument("--fail-on-miss", action="store_true",
                        help="exit 2 when a row misses its target")
    args = parser.parse_args(argv)
    args.n = args.n or [1000]
    if args.repeats < 2 or any(n < 2 for n in args.n):
        parser.error("--repeats and --n must be at least 2")
    return args


@contextlib.contextmanager
def maybe_postgres(enabled: bool) -> Iterator[object | None]:
    if not enabled:
        yield None
        return
    from tests.pgserver import PostgresServer, available

    reason = available()
    if reason:
        raise BenchError(f"--postgresql: {reason}")
    with PostgresServer() as server:
        yield server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    deadline = Deadline(args.max_minutes)
    runs: list[dict] = []
    started = time.perf_counter()
    try:
        with maybe_postgres(args.postgresql) as pg_server:
            for n in args.n:
                runs.append(run_size(n, args, deadline, console, pg_server))
    except BenchError as exc:
        console.print(f"[bold red]BENCH FAILED:[/] {exc}", markup=True, highlight=False)
        return 1
    except requests.RequestException as exc:
        console.print(f"[bold red]BENCH FAILED:[/] HTTP error: {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("[bold red]BENCH INTERRUPTED[/] (servers stopped)")
        return 130
    print_table(console, runs)
    import radicale

    result = {"meta": {"tool": "bench/caldav_bench.py", "seed": args.seed,
                       "repeats": args.repeats, "postgresql": args.postgresql,
                       "radicale": radicale.VERSION, "python": platform.python_version(),
                       "machine": platform.machine(), "cpus": os.cpu_count(),
                       "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                       "wall_seconds": round(time.perf_counter() - started, 1)},
              "runs": runs}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    console.print(f"results written to {args.json} "
                  f"(total {time.perf_counter() - started:.0f} s)")
    missed = [f"N={run['n']} {row['label']}" for run in runs for row in run["rows"]
              if row["pass"] is False]
    if missed:
        console.print("targets missed: " + "; ".join(missed))
        if args.fail_on_miss:
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
