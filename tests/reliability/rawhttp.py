"""One HTTP exchange over a raw socket, and what makes its answer broken.

``requests`` and ``http.client`` forgive a lot (a bare CR in a header, a reason phrase that is
not the standard one, a short body): a phone's HTTP stack may not. So the hostile-input runs
read every answer byte by byte and judge it here: a standard status line (``HTTP/1.x``, a
known code, its standard reason phrase), header lines that are ``name: value`` with a token
name and no control character, only header names the server is known to send, a Server
header naming the product only, no trace of the client's text (the ``canary`` every hostile
body carries) in any header, a body as long as its Content-Length.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import time
from dataclasses import dataclass, field
from http import client
from urllib.parse import urlsplit

CANARY = "canary"  # every hostile body carries it; no header may
SERVER = "gestan-bridge"
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ([^\r\n]*)")
HEADER_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*)")
# Every header gestan-bridge (Radicale, wsgiref, our triggers) sends.
KNOWN_HEADERS = {
    "allow", "cache-control", "connection", "content-encoding", "content-language",
    "content-length", "content-security-policy", "content-type", "dav", "date", "etag",
    "last-modified", "location", "server", "vary", "www-authenticate",
    "x-content-type-options",
}
READ_TIMEOUT = 60.0
MAX_ANSWER = 64 * 1024 * 1024


@dataclass
class Exchange:
    """One request's answer as received; ``problem`` says why it is broken (None: sound)."""

    status: int | None
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    seconds: float = 0.0
    problem: str | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def exchange(url: str, method: str, body: bytes = b"", headers: dict[str, str] | None = None,
             timeout: float = READ_TIMEOUT) -> Exchange:
    """Send one request (``Connection: close``) and read the whole answer, judged. The
    body's Content-Length is sent unless ``headers`` frame the body themselves (a
    Content-Length that lies, a Transfer-Encoding)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    headers = headers or {}
    head = [f"{method} {target} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}",
            "Connection: close"]
    if not {"content-length", "transfer-encoding"} & {k.lower() for k in headers}:
        head.append(f"Content-Length: {len(body)}")
    head += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
    started = time.perf_counter()
    raw = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        # the server may answer (413...) and close before reading it all
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        try:
            while len(raw) < MAX_ANSWER:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                raw += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            return Exchange(None, "", seconds=time.perf_counter() - started,
                            problem=f"no complete answer within {timeout:.0f} s")
    answer = judge(raw)
    answer.seconds = time.perf_counter() - started
    return answer


def judge(raw: bytes) -> Exchange:
    """Parse ``raw`` as an HTTP answer; ``problem`` names the first thing wrong with it."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not raw:
        return Exchange(None, "", problem="no answer (connection closed)")
    if not sep:
        return Exchange(None, "", problem=f"no end of headers: {raw[:80]!r}")
    lines = head.split(b"\r\n")
    status = STATUS_LINE.fullmatch(lines[0])
    if status is None:
        return Exchange(None, "", problem=f"illegal status line {lines[0][:80]!r}")
    code, reason = int(status.group(1)), status.group(2).decode("latin-1")
    answer = Exchange(code, reason, body=body)
    if reason != client.responses.get(code):
        answer.problem = f"non-standard status line {lines[0][:80]!r}"
        return answer
    for line in lines[1:]:
        found = HEADER_LINE.fullmatch(line)
        if found is None:
            answer.problem = f"malformed header line {line[:80]!r}"
            return answer
        answer.headers.append((found.group(1).decode("latin-1"),
                               found.group(2).decode("latin-1").rstrip()))
    for name, value in answer.headers:
        if name.lower() not in KNOWN_HEADERS:
            answer.problem = f"unexpected header {name!r}"
        elif CANARY in value.lower():
            answer.problem = f"client text in header {name}: {value[:80]!r}"
        elif name.lower() == "server" and value != SERVER:
            answer.problem = f"the Server header says {value!r}, not the product's name only"
        if answer.problem:
            return answer
    length = answer.header("Content-Length")
    if length is not None and (not length.isdigit() or int(length) != len(body)):
        answer.problem = f"Content-Length {length} but {len(body)} bytes of body"
    return answer
