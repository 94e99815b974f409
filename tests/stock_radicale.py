"""Stock Radicale 3.9 (its own ``multifilesystem`` storage) in this process, on 127.0.0.1:
the reference answer for the queries gestan-bridge must answer as Radicale does.

Both servers get the same bodies; a test compares what they answer (hrefs, statuses,
occurrences), never our answer against a value written down by hand alone.
"""

from __future__ import annotations

import socketserver
import threading
import wsgiref.simple_server
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import radicale
import radicale.config
import radicale.server
import requests

from tests.conftest import PASSWORDS
from tests.fakes.loopback import POLL_INTERVAL

CALENDAR = "rendez-vous"
_MKCALENDAR = ('<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" '
               'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
               '<C:supported-calendar-component-set><C:comp name="VEVENT"/>'
               '</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>')


class _StockHttp(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    """A plain threaded WSGI server on loopback for stock Radicale's application."""

    daemon_threads = True


class StockServer:
    """A running stock Radicale with ``/alice/rendez-vous/`` made, as a phone would see it."""

    def __init__(self, url: str) -> None:
        self.url = url

    def session(self, login: str = "alice") -> requests.Session:
        session = requests.Session()
        session.auth = (login, PASSWORDS[login])
        session.trust_env = False
        return session

    def calendar_url(self, login: str = "alice") -> str:
        return f"{self.url}{login}/{CALENDAR}/"


@contextmanager
def stock_radicale(folder: Path) -> Iterator[StockServer]:
    folder.mkdir(parents=True, exist_ok=True)
    users = folder / "users"
    users.write_text("".join(f"{login}:{password}\n" for login, password in PASSWORDS.items()))
    configuration = radicale.config.load()
    configuration.update({
        "auth": {"type": "htpasswd", "htpasswd_filename": str(users),
                 "htpasswd_encryption": "plain", "delay": "0.01"},
        "rights": {"type": "owner_only"},
        "storage": {"type": "multifilesystem",
                    "filesystem_folder": str(folder / "collections")},
        "web": {"type": "none"},
        "logging": {"level": "warning"},
        "server": {"delay_on_error": "0"},  # its 1 s pause before a 500 answer
    }, "test", privileged=True)
    httpd = _StockHttp(("127.0.0.1", 0), radicale.server.RequestHandler)
    httpd.set_app(radicale.Application(configuration))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
                              daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    stock = StockServer(f"http://{host}:{port}/")
    try:
        for login in ("alice", "bob"):
            made = stock.session(login).request("MKCALENDAR", stock.calendar_url(login),
                                                data=_MKCALENDAR)
            assert made.status_code == 201, made.text
        yield stock
    finally:
        httpd.shutdown()
        httpd.server_close()

