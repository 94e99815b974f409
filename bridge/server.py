"""The HTTP server: Radicale's application (with our plugins) on a threaded WSGI server.

Radicale's own ``radicale.server.serve`` builds its application itself; we need ours
(:class:`GestanApplication`), so this module binds it the same way: one thread per request,
Radicale's request handler, loopback by default.
"""

from __future__ import annotations

import functools
import logging
import socket
import socketserver
import threading
import wsgiref.simple_server
from pathlib import Path

import radicale.config
import radicale.log
import radicale.server

from bridge.caldav_app import GestanApplication
from bridge.store import open_store
from bridge.store.engine import database_url

logger = logging.getLogger("gestan_bridge")

# The plugins are what makes this server gestan-bridge: set whatever the file says.
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


def load_configuration(config_file: str | Path | None, db_url: str | None,
                       host: str = "127.0.0.1", port: int = 5232,
                       overrides: dict | None = None) -> radicale.config.Configuration:
    sources = [(str(config_file), False)] if config_file else []
    configuration = radicale.config.load(sources)
    values = {section: dict(options) for section, options in PLUGINS.items()}
    if configuration.get("reporting", "max_expand_occurrence") == RADICALE_MAX_REPORT:
        values["reporting"] = {"max_expand_occurrence": str(MAX_REPORT)}
    values["storage"]["db_url"] = database_url(db_url)
    if port:  # port 0 (any free port) is given to Server directly: Radicale refuses it
        values["server"] = {"hosts": f"{host}:{port}"}
    for section, options in (overrides or {}).items():
        values.setdefault(section, {}).update(options)
    configuration.update(values, "gestan-bridge", privileged=True)
    return configuration


class _ThreadedServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    timeout_seconds = 60.0

    def get_request(self):
        request, address = super().get_request()
        request.settimeout(self.timeout_seconds)
        return request, address


class _RequestHandler(radicale.server.RequestHandler):
    """Radicale's handler, naming the product only (not Python's version) on the errors
    it answers itself."""

    server_version = "gestan-bridge"
    sys_version = ""


def listen(address: tuple[str, int]) -> _ThreadedServer:
    """The listening socket of ``address``; ``OSError`` names the address when it cannot
    be had (a busy port), so that a caller may bind before anything else starts."""
    host, port = address
    _ThreadedServer.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return _ThreadedServer((host, port), _RequestHandler)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: "
                                 f"{exc.strerror or exc}") from None


class Server:
    """A running gestan-bridge HTTP server (``start`` in a thread, or ``serve_forever``)."""

    def __init__(self, configuration: radicale.config.Configuration,
                 address: tuple[str, int] | None = None,
                 httpd: _ThreadedServer | None = None) -> None:
        """``httpd``: a socket :func:`listen` already bound (``address`` is then unused)."""
        self.configuration = configuration
        self.application = GestanApplication(configuration)
        self.store = open_store(configuration.get("storage", "db_url"))
        self.httpd = httpd or listen(address or configuration.get("server", "hosts")[0])
        self.httpd.set_app(self.application)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def _refresh_series_forever(self) -> None:
        while not self._stop.wait(SERIES_REFRESH_SECONDS):
            try:
                self.store.refresh_series()
            except Exception:  # keep serving; the next round tries again
                logger.exception("series refresh failed")

    def start(self) -> Server:
        self.store.refresh_series()
        # a short poll: stop() (every test's server) returns within 50 ms, not half a second
        serve = functools.partial(self.httpd.serve_forever, poll_interval=0.05)
        for target in (serve, self._refresh_series_forever):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def serve_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1):
                pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def setup_logging(level: str = "info") -> None:
    radicale.log.setup()
    radicale.log.set_level(level.upper(), backtrace_on_debug=False)
