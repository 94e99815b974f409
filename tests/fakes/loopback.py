"""What every loopback fake shares: serving on 127.0.0.1 (a free port) from a daemon thread,
started and stopped as a context manager, and the answer type of its routes."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

# How often a serving loop looks for stop(): socketserver's loop only notices a shutdown
# between two waits, so stop() waited up to this long (half of it on average), after every
# test that starts a fake. The wait costs a wake-up per interval while serving.
POLL_INTERVAL = 0.01  # seconds

@dataclass
class Reply:
    """One HTTP answer (also used for batch parts)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


class LoopbackServer:
    """A fake's server: ``handler`` (given ``fake=self``) on 127.0.0.1 in a daemon thread.

    Subclasses name ``handler`` and ``thread_name``; ``_secure`` may wrap the listening
    socket (TLS) and ``_cleanup`` undo what it made."""

    handler: type[BaseHTTPRequestHandler]
    thread_name = "fake"
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        bound = type("Handler", (self.handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), bound)
        self._server.daemon_threads = True
        self._secure(self._server)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_INTERVAL,),
                                        daemon=True, name=self.thread_name)
        self._thread.start()
        return self

    def _secure(self, server: ThreadingHTTPServer) -> None:
        """Plain HTTP unless a subclass wraps the socket."""

    def _cleanup(self) -> None:
        """Nothing to undo unless a subclass made something."""

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "fake not started"
        return self._server.server_address[1]


@dataclass
class Failure:
    """An error a fake answers instead of an operation (``after_apply``: after doing it)."""

    status: int
    code: str | None
    retry_after: int | None
    after_apply: bool


class FaultInjection:
    """The faults a fake can be told to answer: the next operations, or a seeded random
    fraction of them. The fake holds ``_lock`` and calls :meth:`_take_failure` per
    operation (a batch part counts one)."""

    default_retry_after: int | None = None
    _lock: threading.Lock

    def _reset_faults(self) -> None:
        self.injected_errors = 0
        self._fail_queue: list[Failure] = []
        self._random_fail: tuple[float, tuple[int, ...], random.Random, int | None] | None = None

    def _queue_failures(self, count: int, status: int, code: str | None,
                        retry_after: int | None, after_apply: bool) -> None:
        with self._lock:
            self._fail_queue.extend(Failure(status, code, retry_after, after_apply)
                                    for _ in range(count))

    def fail_randomly(self, rate: float, statuses: Iterable[int] = (429, 503), *, seed: int = 0,
                      retry_after: int | None = None) -> None:
        """Answer a seeded random fraction of operations with one of ``statuses``."""
        with self._lock:
            self._random_fail = (rate, tuple(statuses), random.Random(seed),
                                 retry_after if retry_after is not None
                                 else self.default_retry_after)

    def clear_failures(self) -> None:
        with self._lock:
            self._fail_queue.clear()
            self._random_fail = None

    def _take_failure(self) -> Failure | None:
        if self._fail_queue:
            return self._fail_queue.pop(0)
        if self._random_fail is not None:
            rate, statuses, rng, retry_after = self._random_fail
            if rng.random() < rate:
                return Failure(rng.choice(statuses), None, retry_after, False)
        return None


class JsonHandler(BaseHTTPRequestHandler):
    """Hands every request to the owning fake's ``_handle_http(method, path, headers,
    body) -> Reply`` and writes the reply (a JSON API's: Google's, Graph's). Subclasses say
    how a fake bug is answered and which Content-Type and headers every answer carries."""

    fake: Any
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid 40 ms stalls
    timeout = 10
    content_type = "application/json; charset=UTF-8"
    no_body_statuses: tuple[int, ...] = (204,)
    status_text: dict[int, str] = {}

    def error_reply(self, exc: Exception) -> Reply:
        return Reply(500, {"error": f"fake error: {exc!r}"})

    def extra_headers(self) -> dict[str, str]:
        return {}

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        for key, value in self.headers.items():  # a repeated header: its values joined
            k = key.lower()
            headers[k] = f"{headers[k]}, {value}" if k in headers else value
        try:
            reply = self.fake._handle_http(self.command, self.path, headers, body)
        except Exception as exc:  # noqa: BLE001 - a fake bug must still answer
            reply = self.error_reply(exc)
        payload = reply.payload()
        self.send_response(reply.status, self.status_text.get(reply.status))
        names = {k.lower() for k in reply.headers}
        if "content-type" not in names and reply.status not in self.no_body_statuses:
            self.send_header("Content-Type", self.content_type)
        for key, value in {**self.extra_headers(), **reply.headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Stay quiet."""
