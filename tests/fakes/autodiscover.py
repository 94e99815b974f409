"""The network exchangelib's autodiscover crosses, on loopback, so that it can find an EWS fake
from an e-mail address alone (and find nothing for an unknown domain) without leaving the
machine. exchangelib itself is not patched: only settings it offers are set, and put back.

* DNS: :class:`FakeDns`, a UDP responder on 127.0.0.1 built from dnspython's messages, holds
  the records given (A, SRV) and answers NXDOMAIN for any other name; exchangelib's resolver
  (for its host and SRV look-ups) is pointed at it through ``Autodiscovery.DNS_RESOLVER_KWARGS``
  and ``DNS_RESOLVER_ATTRS``.
* HTTPS: ``AutodiscoverProtocol.HTTP_ADAPTER_CLS`` (the hook exchangelib offers for proxies and
  TLS settings) becomes an adapter that sends a request for ``https://HOST/...`` to the fake
  serving HOST, in plain HTTP on loopback with its Host header kept; a host served by no fake
  is refused at once. (So TLS is not exercised; everything above it is.)
* exchangelib's autodiscover cache (a shelve file in the temporary directory, shared by every
  process) lives in the test's own directory and is emptied before and after.

    with FakeEws() as fake, ExchangeNetwork({"autodiscover.example.com": fake}, tmp_path):
        account = Account(fake.email, credentials=..., autodiscover=True)
"""

from __future__ import annotations

import socketserver
import threading
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import requests
from exchangelib.autodiscover import cache, clear_cache
from exchangelib.autodiscover.discovery import Autodiscovery
from exchangelib.autodiscover.protocol import AutodiscoverProtocol

from tests.fakes.loopback import POLL_INTERVAL

_UNSET = object()


class FakeDns:
    """A DNS server on 127.0.0.1 (UDP, a free port) for ``records``: {(name, type): [rdata]},
    e.g. {("autodiscover.example.com", "A"): ["127.0.0.1"]}; ``queries`` logs what was asked."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = {(name.lower().rstrip("."), kind.upper()): values
                        for (name, kind), values in records.items()}
        self.queries: list[tuple[str, str]] = []
        self._server: socketserver.UDPServer | None = None
        self._thread: threading.Thread | None = None

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        names = {name for name, _ in self.records}
        for question in query.question:
            name = question.name.to_text(omit_final_dot=True).lower()
            kind = dns.rdatatype.to_text(question.rdtype)
            self.queries.append((name, kind))
            if (name, kind) in self.records:
                response.answer.append(dns.rrset.from_text_list(
                    question.name, 60, "IN", kind, self.records[name, kind]))
            elif name not in names:
                response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def start(self) -> Self:
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                wire, sock = self.request
                sock.sendto(fake.answer(wire), self.client_address)

        self._server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_INTERVAL,),
                                        daemon=True, name="fake-dns")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        assert self._server is not None, "fake DNS not started"
        return self._server.server_address[1]


def routing_adapter(hosts: dict[str, Any]) -> type[requests.adapters.HTTPAdapter]:
    """An HTTPAdapter class sending https://HOST/... to ``hosts[HOST]`` (a started fake with
    a ``port``), refusing other hosts; loopback URLs (a fake's own) pass as they are."""
    routes = {host.lower(): fake for host, fake in hosts.items()}

    class RoutingAdapter(requests.adapters.HTTPAdapter):
        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
                 ) -> requests.Response:
            parts = urlsplit(request.url or "")
            host = (parts.hostname or "").lower()
            if host != "127.0.0.1":
                if host not in routes:
                    raise requests.ConnectionError(f"{host}: no such host on this network")
                request.headers["Host"] = parts.netloc
                request.url = urlunsplit(parts._replace(
                    scheme="http", netloc=f"127.0.0.1:{routes[host].port}"))
            return super().send(request, *args, **kwargs)

    return RoutingAdapter


class ExchangeNetwork:
    """DNS and HTTPS for exchangelib's autodiscover: each of ``hosts`` (name → fake) has an A
    record and is served by its fake; ``srv`` adds the _autodiscover._tcp SRV records
    ({domain: target host}). Anything else does not exist."""

    def __init__(self, hosts: dict[str, Any], cache_dir: Path,
                 srv: dict[str, str] | None = None) -> None:
        records = {(host, "A"): ["127.0.0.1"] for host in hosts}
        for domain, target in (srv or {}).items():
            records[f"_autodiscover._tcp.{domain}", "SRV"] = [f"0 0 443 {target}."]
        self.dns = FakeDns(records)
        self.hosts = hosts
        self.cache_dir = cache_dir
        self._saved: list[tuple[Any, str, Any]] = []

    def _set(self, owner: Any, name: str, value: Any) -> None:
        self._saved.append((owner, name, vars(owner).get(name, _UNSET)))
        setattr(owner, name, value)

    def __enter__(self) -> Self:
        self.dns.start()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._set(Autodiscovery, "DNS_RESOLVER_KWARGS", {"configure": False})
        self._set(Autodiscovery, "DNS_RESOLVER_ATTRS", {
            **Autodiscovery.DNS_RESOLVER_ATTRS, "nameservers": ["127.0.0.1"],
            "port": self.dns.port})
        self._set(AutodiscoverProtocol, "HTTP_ADAPTER_CLS", routing_adapter(self.hosts))
        self._set(cache, "AUTODISCOVER_PERSISTENT_STORAGE", self.cache_dir / "exchangelib")
        clear_cache()
        return self

    def __exit__(self, *exc: object) -> None:
        clear_cache()
        while self._saved:
            owner, name, value = self._saved.pop()
            if value is _UNSET:
                delattr(owner, name)  # inherited again
            else:
                setattr(owner, name, value)
        self.dns.stop()
