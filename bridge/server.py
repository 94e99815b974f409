"""The HTTP server: Radicale's own server classes and serve loop (bridge.radicale_compat)
running our application (:class:`GestanApplication`), on the configuration of one file.

:func:`load_configuration` turns the file into Radicale's configuration: each of its
settings honoured or refused (bridge.config), our plugins set, the database named.
:class:`Server` binds what ``[server]`` says (``hosts``, ``ssl``/``certificate``/``key``,
``timeout`` per connection, at most ``max_connections`` at once) and fails in one line, naming
the address, when it cannot.
"""

from __future__ import annotations

import faulthandler
import logging
import signal
import threading
from pathlib import Path

import radicale.config
from sqlalchemy import make_url

from bridge import config
from bridge import radicale_compat as compat
from bridge.caldav_app import GestanApplication
from bridge.config import ConfigError

logger = logging.getLogger("gestan_bridge")

# The plugins are what makes this server gestan-bridge (bridge.config refuses others).
PLUGINS = {
    "auth": {"type": "plugins.auth"},
    "rights": {"type": "plugins.rights"},
    "storage": {"type": "plugins.storage"},
}
SERIES_REFRESH_SECONDS = 3600
# Radicale refuses a REPORT serving more than 10,000 VEVENTs (its default): a user's own
# full sync must work for years of appointments (the objects come from SQL, not a parse
# per item). A value set in radicale.conf is kept.
RADICALE_MAX_REPORT = 10000
MAX_REPORT = 1000000
LOG_LEVELS = compat.LOG_LEVELS


class ServerError(Exception):
    """The server cannot start (address in use, certificate unreadable): one line."""


def load_configuration(config_file: str | Path | None, db_url: str | None = None,
                       host: str | None = None, port: int | None = None,
                       overrides: dict | None = None) -> radicale.config.Configuration:
    """Radicale's configuration from ``config_file``, with the precedence of bridge.config:
    ``db_url``/``host``/``port`` (the command line) over the environment over the file over
    the defaults. ``overrides`` (tests) are applied last. A refused setting raises
    :class:`ConfigError` naming it and why."""
    path = Path(config_file) if config_file else None
    settings = config.Settings(path)
    sections = {s: o for s, o in settings.sections.items() if s != config.SECTION}
    problems = config.radicale_problems(sections, str(path))
    if problems:
        more = f" (and {len(problems) - 1} more refused)" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    configuration = radicale.config.load([])
    configuration.update(_defaults(sections), "gestan-bridge defaults")
    try:
        configuration.update(sections, f"config file {str(path)!r}")
    except (RuntimeError, ValueError) as exc:
        raise ConfigError((str(exc).splitlines() or ["invalid configuration"])[0]) from None
    values = {section: dict(options) for section, options in PLUGINS.items()}
    values["storage"]["db_url"] = settings.get("db_url", db_url)
    values["storage"]["requests_at_once"] = str(settings.get("requests_at_once"))
    if "max_expand_occurrence" not in sections.get("reporting", {}):
        values["reporting"] = {"max_expand_occurrence": str(MAX_REPORT)}
    if host is not None or port:  # port 0 (any free port) goes to Server: Radicale refuses it
        first_host, first_port = configuration.get("server", "hosts")[0]
        chosen = (host or first_host, port or first_port)
        values["server"] = {"hosts": f"[{chosen[0]}]:{chosen[1]}" if ":" in chosen[0]
                            else f"{chosen[0]}:{chosen[1]}"}
    for section, options in (overrides or {}).items():
        values.setdefault(section, {}).update(options)
    configuration.update(values, "gestan-bridge", privileged=True)
    return configuration


def _defaults(sections: dict) -> dict:
    """Our defaults for Radicale's settings; Radicale's own ``max_resource_size`` (one
    item) follows the body limit at the 80 % it allows, unless the file sets it."""
    defaults = {s: dict(o) for s, o in config.RADICALE_DEFAULTS.items()}
    server = sections.get("server", {})
    if "max_resource_size" not in server:
        limit = server.get("max_content_length", defaults["server"]["max_content_length"])
        if limit.strip().isdigit():
            defaults["server"]["max_resource_size"] = str(int(int(limit) * 0.8))
    return defaults


class Server:
    """A running gestan-bridge HTTP server (``start`` in a thread, or ``serve_forever``).

    ``address`` replaces ``[server] hosts`` (port 0: any free port)."""

    def __init__(self, configuration: radicale.config.Configuration,
                 address: tuple[str, int] | None = None) -> None:
        self.configuration = compat.internal_server(configuration)
        try:
            servers = compat.bind(self.configuration, address)
        except compat.BindError as exc:
            raise ServerError(str(exc)) from None
        except RuntimeError as exc:
            reason = compat.tls_error(exc)
            if reason is None:
                raise
            raise ServerError(reason) from None
        self.tls = bool(self.configuration.get("server", "ssl"))
        self.loop = compat.ServeLoop(servers, self.configuration.get("server", "max_connections"),
                                     grace=self.configuration.get("server", "timeout"))
        try:
            with compat.startup_at_debug():
                self.application = GestanApplication(self.configuration)
        except BaseException:
            self.loop.close_sockets()
            raise
        for server in self.loop.servers.values():
            server.set_app(self.application)
        self.store = self.application.store
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def urls(self) -> list[str]:
        scheme = "https" if self.tls else "http"
        found = []
        for server in self.loop.servers.values():
            host, port = server.server_address[:2]
            found.append(f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}/")
        return found

    @property
    def url(self) -> str:
        return self.urls[0]

    def banner(self) -> str:
        """Two lines: the database (never its password), where phones and the web UI go."""
        web = self.configuration.get("web", "type")
        web_ui = f"web UI {self.url}.web/" if web == "internal" else "web UI off"
        return (f"gestan-bridge serving the agenda of {describe_database(self.store.url)}\n"
                f"phones: {', '.join(self.urls)} (calendars at <login>/rendez-vous/); "
                f"{web_ui}")

    def _refresh_series_forever(self) -> None:
        while not self._stop.wait(SERIES_REFRESH_SECONDS):
            try:
                self.store.refresh_series()
            except Exception:  # keep serving; the next round tries again
                logger.exception("series refresh failed")

    def start(self) -> Server:
        self.store.refresh_series()
        for target in (self.loop.run, self._refresh_series_forever):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop_on_signals(self) -> None:
        """SIGTERM (systemd, docker stop) and SIGINT stop :meth:`serve_forever` the same
        graceful way, even when the parent left SIGINT ignored (Python then installs no
        handler of its own); ``kill -QUIT`` writes every thread's stack to stderr (what a
        server that does not stop is waiting for). From the main thread, before anything
        else can signal it."""
        faulthandler.register(signal.SIGQUIT, all_threads=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self._stop.set())

    def serve_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1):
                pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        if not self._threads:
            self.loop.close_sockets()
            return
        self.loop.stop()
        self._threads[0].join(self.loop.grace + 1)


def describe_database(url: str) -> str:
    """``SQLite file /abs/path`` or ``PostgreSQL database NAME on HOST:PORT as USER``: what
    an admin needs to recognise the database, never a password."""
    try:
        parsed = make_url(url)
    except Exception:
        return "an unreadable database URL"
    if parsed.get_backend_name() == "sqlite":
        name = parsed.database or ""
        return f"SQLite file {Path(name).resolve() if name else '(in memory)'}"
    where = f"{parsed.host or 'localhost'}{f':{parsed.port}' if parsed.port else ''}"
    user = f" as {parsed.username}" if parsed.username else ""
    return f"PostgreSQL database {parsed.database or '(default)'} on {where}{user}"


def setup_logging(configuration: radicale.config.Configuration | None = None,
                  level: str | None = None) -> None:
    """Logging to stderr at ``level`` (the command line), else ``[logging] level``; ours
    (``gestan_bridge``) at the same level as Radicale's."""
    if level is not None and level.lower() not in LOG_LEVELS:
        raise ConfigError(f"invalid log level {level!r}: choose one of {', '.join(LOG_LEVELS)}")
    get = configuration.get if configuration is not None else None
    chosen = (level or (get("logging", "level") if get else "info")).lower()
    compat.set_log_level(chosen, bool(get("logging", "backtrace_on_debug")) if get else False,
                         get("logging", "trace_filter") if get else "")
    logger.setLevel(chosen.upper())
