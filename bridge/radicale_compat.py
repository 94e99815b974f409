"""Everything of gestan-bridge that leans on Radicale's internals, for the one version tested.

Radicale is pinned to :data:`RADICALE_VERSION` (pyproject.toml); tests/test_compat.py is the
canary that fails when what is used here changes shape: the ``do_*`` request methods'
parameters, the application's private ``_rights`` and ``_encoding``, the private attributes
``Item`` reads, the server classes and the serve loop copied from ``radicale.server.serve``.
Upgrading Radicale means running that test, then adapting this module (and only it).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import ssl
import time
from collections.abc import Iterator

import radicale
import radicale.log
import radicale.server
from radicale import config as radicale_config
from radicale import item as radicale_item
from radicale import utils

RADICALE_VERSION = "3.9.0"

# ``Application.do_<METHOD>(self, environ, base_prefix, path, user, user_groups,
# request_info)``: what gestan-bridge's overrides receive and hand on (bridge/caldav_app.py).
REQUEST_PARAMETERS = ("environ", "base_prefix", "path", "user", "user_groups", "request_info")
OVERRIDDEN = ("do_PUT", "do_REPORT", "do_PROPPATCH", "do_DELETE", "do_MKCOL", "do_MKCALENDAR",
              "do_MOVE", "do_POST")

# What ``Item.__init__`` sets (its properties read them); :func:`init_item` sets them without
# running it.
ITEM_ATTRIBUTES = frozenset({
    "_collection_path", "collection", "href", "last_modified", "_text", "_vobject_item",
    "_etag", "_uid", "_name", "_component_name", "_time_range"})


# ------------------------------------------------------------------ the application
def rights(application: radicale.Application):
    """The application's rights plugin (Radicale keeps it private)."""
    return application._rights


def storage(application: radicale.Application):
    """The application's storage plugin (Radicale keeps it private)."""
    return application._storage


def encoding(application: radicale.Application) -> str:
    """The response encoding (``[encoding] stock``) the application answers with."""
    return application._encoding


def webdav_error(application: radicale.Application, status: int, tag: str,
                 request_info: dict):
    """A WebDAV precondition error (``<D:error><C:no-uid-conflict/>``) as Radicale words it."""
    return application._webdav_error_response(status, tag, request_info)


def init_item(item: radicale_item.Item, *, collection, href: str, text: str | None,
              etag: str, uid: str, name: str = "VCALENDAR",
              component_name: str = "VEVENT") -> None:
    """Fill ``item`` as ``Item.__init__`` would, minus its per-item path sanitising and date
    formatting (a tenth of a 10,000-item sync). ``last_modified`` and ``time_range`` are left
    to the subclass (properties of ours); ``text`` None is fetched by the subclass."""
    item._collection_path = collection.path
    item.collection = collection
    item.href = href
    item._text = text
    item._vobject_item = None
    item._etag = etag
    item._uid = uid
    item._name = name
    item._component_name = component_name


# Seconds Radicale counts per occurrence of each FREQ when it estimates the occurrences of a
# rule ending with UNTIL (``[server] max_vevent_rrule_occurrence``; bridge/caldav_put.py).
RRULE_FREQUENCY_SECONDS: dict[str, float] = radicale_item.RRULE_FREQUENCIES_TO_INTERVAL


def radicale_refuses(text: str, max_occurrence: int) -> str | None:
    """Why Radicale's own PUT would refuse ``text`` (None: it would store it): the canary's
    way to check that bridge/caldav_put.py refuses what Radicale refused."""
    try:
        components = radicale_item.read_components(text)
        radicale_item.check_and_sanitize_items(
            components, max_vevent_rrule_occurrence=max_occurrence, is_collection=False,
            tag="VCALENDAR")
    except Exception as exc:  # vobject and Radicale raise anything from ValueError on
        return str(exc) or type(exc).__name__
    return None


def internal_server(configuration: radicale_config.Configuration
                    ) -> radicale_config.Configuration:
    """A copy of ``configuration`` marked as served by Radicale's own server, as
    ``radicale.server.serve`` does: the application then refuses a body over
    ``[server] max_content_length`` itself."""
    configuration = configuration.copy()
    configuration.update({"server": {"_internal_server": "True"}}, "server", privileged=True)
    return configuration


class _Demoted(logging.Filter):
    """Radicale's records below WARNING, logged at DEBUG instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return radicale.log.logger.isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def startup_at_debug() -> Iterator[None]:
    """Radicale's start-up chatter (fifty lines of settings at INFO) at DEBUG; warnings
    stay warnings."""
    demoted = _Demoted()
    radicale.log.logger.addFilter(demoted)
    try:
        yield
    finally:
        radicale.log.logger.removeFilter(demoted)


class _PerRequestAtDebug(logging.Filter):
    """Radicale logs three lines per request at INFO ("… request for … received from …",
    "Successful login: …", then "… response status for … in … seconds: …"); the last says
    all, so the others are DEBUG: one line per request at INFO (failed logins stay)."""

    PREFIXES = ("%s request for %r%s received from ", "Successful login: ")

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.levelno == logging.INFO and isinstance(record.msg, str)
                and record.msg.startswith(self.PREFIXES)):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return radicale.log.logger.isEnabledFor(logging.DEBUG)


_PER_REQUEST = _PerRequestAtDebug()
LOG_LEVELS = tuple(radicale.log.LOG_LEVEL_OPTIONS)   # trace, debug, info, notice, ...


def set_log_level(level: str, backtrace_on_debug: bool, trace_filter: str = "") -> None:
    """Radicale's logging (stderr, its format) at ``level`` (one of :data:`LOG_LEVELS`), as
    its own ``main`` sets it."""
    with startup_at_debug():
        radicale.log.setup()
        radicale.log.set_level(logging.getLevelName(level.upper()), backtrace_on_debug,
                               trace_filter)
    radicale.log.logger.addFilter(_PER_REQUEST)   # once: a filter is kept by identity


# ------------------------------------------------------------------ the server
class BindError(Exception):
    """No socket to serve on: the message names the address."""


class RequestHandler(radicale.server.RequestHandler):
    """Radicale's handler, naming the product only (not Python's version) on the errors it
    answers itself."""

    server_version = "gestan-bridge"
    sys_version = ""


class _HTTPServer(radicale.server.ParallelHTTPServer):
    request_queue_size = 64   # fifty phones at once wait in the queue, not refused


class _HTTPSServer(radicale.server.ParallelHTTPSServer):
    request_queue_size = 64


def bind(configuration: radicale_config.Configuration,
         address: tuple[str, int] | None = None) -> list[radicale.server.ParallelHTTPServer]:
    """Radicale's server sockets (TLS when ``[server] ssl``; ``timeout`` per connection), one
    per address of ``[server] hosts`` (or of ``address``, which may have port 0)."""
    server_class = _HTTPSServer if configuration.get("server", "ssl") else _HTTPServer
    hosts = [address] if address else configuration.get("server", "hosts")
    servers: list[radicale.server.ParallelHTTPServer] = []
    try:
        for host, port in hosts:
            shown = utils.format_address((host, port))
            try:
                infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM,
                                           socket.IPPROTO_TCP)
            except OSError as exc:
                raise BindError(f"cannot listen on {shown}: {exc.strerror or exc}") from None
            seen = set()
            for family, _, _, _, sockaddr in infos:
                if sockaddr[:2] in seen:
                    continue
                seen.add(sockaddr[:2])
                try:
                    servers.append(server_class(configuration, family, sockaddr[:2],
                                                RequestHandler))
                except ssl.SSLError as exc:
                    raise BindError(
                        "cannot use the TLS certificate and key "
                        f"({configuration.get('server', 'certificate')}, "
                        f"{configuration.get('server', 'key')}): {exc.reason or exc}") from None
                except OSError as exc:
                    where = utils.format_address(sockaddr[:2])
                    if exc.errno == errno.EADDRINUSE or len(infos) == 1:
                        reason = ("address already in use" if exc.errno == errno.EADDRINUSE
                                  else exc.strerror or str(exc))
                        raise BindError(f"cannot listen on {where}: {reason}") from None
                    radicale.log.logger.warning("not listening on %s: %s", where, exc)
    except BaseException:
        for server in servers:
            server.server_close()
        raise
    if not servers:
        raise BindError(f"cannot listen on any address of {hosts}")
    return servers


def _readable(sockets, timeout: float | None = None) -> set:
    """The sockets ready to read: epoll where there is one (``select`` refuses file
    descriptors past 1023, which a busy or long-lived process reaches)."""
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        return {key.fileobj for key, _ in selector.select(timeout)}


class ServeLoop:
    """``radicale.server.serve``'s main loop around sockets already bound: a worker thread
    per connection, at most ``max_connections`` at once (0: no limit), stopped from any
    thread by :meth:`stop`; active requests get ``grace`` seconds to finish."""

    def __init__(self, servers: list[radicale.server.ParallelHTTPServer],
                 max_connections: int, grace: float) -> None:
        self.servers = {server.socket: server for server in servers}
        self.max_connections = max_connections
        self.grace = grace
        self._wake, self._stopper = socket.socketpair()

    def run(self) -> None:
        try:
            while True:
                workers = [s for server in self.servers.values()
                           for s in server.worker_sockets]
                watched = [*workers, self._wake]
                if self.max_connections <= 0 or len(workers) < self.max_connections:
                    watched.extend(self.servers)
                ready = _readable(watched)
                if self._wake in ready:
                    return
                for server in self.servers.values():
                    finished = server.worker_sockets & ready
                    for s in finished:
                        s.close()
                        server.worker_sockets.discard(s)
                    ready -= finished
                for listening in ready:
                    self.servers[listening].handle_request()
        finally:
            self._close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._stopper.send(b"x")

    def _close(self) -> None:
        pending = {s for server in self.servers.values() for s in server.worker_sockets}
        deadline = time.monotonic() + self.grace
        while pending and (left := deadline - time.monotonic()) > 0:
            for s in _readable(pending, left):
                s.close()
                pending.discard(s)
        for s in pending:
            s.close()
        self.close_sockets()

    def close_sockets(self) -> None:
        for server in self.servers.values():
            server.server_close()
        self._wake.close()
        self._stopper.close()


def tls_error(exc: BaseException) -> str | None:
    """A one-line reason when binding failed on an unreadable ``[server] certificate``/``key``
    (Radicale raises RuntimeError naming the option), else None."""
    if isinstance(exc, RuntimeError) and "section 'server'" in str(exc):
        return (str(exc).splitlines() or [""])[0]
    return None
