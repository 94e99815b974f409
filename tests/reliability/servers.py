"""`gestan-bridge serve` as its own process (what a crash kills, what writes a log file),
through the benchmark's :class:`bench.caldav_bench.ServerProcess`, and the same server in
this process (cheaper, for what needs no process of its own)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.caldav_bench import ServerProcess, free_port
from bridge.server import Server, load_configuration
from tests.clirun import script

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "radicale.conf"


def config_file(directory: Path, auth_delay: float | None = None) -> Path:
    """The project's radicale.conf, with another ``[auth] delay`` when given."""
    text = CONFIG.read_text()
    if auth_delay is not None:
        text = text.replace("delay = 1\n", f"delay = {auth_delay}\n")
    path = directory / "radicale.conf"
    path.write_text(text)
    return path


def start_process(workdir: Path, db_url: str, env: dict[str, str] | None = None,
                  log_level: str = "warning", config: Path = CONFIG,
                  name: str = "gestan-bridge") -> ServerProcess:
    """Start ``gestan-bridge serve`` on a free loopback port; its output goes to
    ``workdir/<name>-server.log``."""
    variables = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    variables.pop("GESTAN_BRIDGE_DB", None)
    port = free_port()
    command = [script(), "serve", "--db", db_url, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", log_level, "--config", str(config)]
    return ServerProcess(name, command, workdir, variables, port).start()


def start_in_process(db_url: str, auth_delay: float = 0.01,
                     overrides: dict[str, dict[str, str]] | None = None) -> Server:
    """The project's radicale.conf, with ``overrides`` (section → settings) on top."""
    sections = {"auth": {"delay": str(auth_delay)}, "logging": {"level": "warning"}}
    for section, settings in (overrides or {}).items():
        sections.setdefault(section, {}).update(settings)
    configuration = load_configuration(CONFIG, db_url, "127.0.0.1", 0, overrides=sections)
    return Server(configuration, ("127.0.0.1", 0)).start()
