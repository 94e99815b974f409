"""Who may do what: every CalDAV method, the sync triggers and the web UI, on alice's
calendar, as each kind of caller, against the outcome expected in :data:`EXPECTED`.

Callers: the owner (alice), another user (bob), an admin (carol), a user whose admin flag was
just removed (dave: the flag is read at each request, not cached with the login), the
owner's login with a wrong password, and no credentials at all. A refused write must leave
the store as it was and a refused read must not show alice's appointment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.reliability.rawhttp import Exchange, basic, exchange

OWNER, OTHER, ADMIN, EX_ADMIN, WRONG, NONE = ("owner", "other user", "admin", "ex-admin",
                                              "wrong password", "no password")
CALLERS = (OWNER, OTHER, ADMIN, EX_ADMIN, WRONG, NONE)
SECRET_SUMMARY = "Visite médicale confidentielle"  # alice's appointment: no one else sees it
SECRET_WORD = b"confidentielle"
ITEM = "alice/rendez-vous/a1.ics"


def event_body(uid: str, summary: str = SECRET_SUMMARY, day: str = "20270115") -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//access//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20261201T000000Z\r\n"
            f"DTSTART;TZID=Europe/Paris:{day}T100000\r\n"
            f"DTEND;TZID=Europe/Paris:{day}T110000\r\nSUMMARY:{summary}\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n").encode()


XML = {"Content-Type": "application/xml; charset=utf-8"}
PROPFIND = (b'<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getetag/><displayname/>'
            b"</prop></propfind>")
SYNC = (b'<?xml version="1.0"?><sync-collection xmlns="DAV:"><sync-token/><sync-level>1'
        b'</sync-level><prop><getetag/></prop></sync-collection>')
MULTIGET = (b'<?xml version="1.0"?><C:calendar-multiget xmlns="DAV:" '
            b'xmlns:C="urn:ietf:params:xml:ns:caldav"><prop><getetag/><C:calendar-data/></prop>'
            b"<href>/alice/rendez-vous/a1.ics</href></C:calendar-multiget>")
PROPPATCH = (b'<?xml version="1.0"?><propertyupdate xmlns="DAV:"><set><prop><displayname>'
             b"Agenda de %s</displayname></prop></set></propertyupdate>")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    writes: bool = False          # an accepted answer changes the store


WRITERS = (OWNER, ADMIN)  # the callers whose writes succeed: each gets items of its own


def col(caller: str) -> str:
    """The caller's items: its own for a writer, one shared by the refused callers."""
    return caller if caller in WRITERS else "refused"


# Each row: a request built for a caller's column (writers' names do not collide), the
# status expected per caller. The ex-admin and the other user are alike.
def _rows() -> dict[str, tuple[Callable[[str], Request], dict[str, int]]]:
    read = {OWNER: 207, OTHER: 403, ADMIN: 207, EX_ADMIN: 403, WRONG: 401, NONE: 401}

    return {
        "OPTIONS calendar": (lambda c: Request("OPTIONS", "alice/rendez-vous/"),
                             {**dict.fromkeys(CALLERS, 200), WRONG: 401}),
        "PROPFIND calendar": (lambda c: Request("PROPFIND", "alice/rendez-vous/", PROPFIND,
                                                (("Depth", "1"), *XML.items())), read),
        "PROPFIND home": (lambda c: Request("PROPFIND", "alice/", PROPFIND,
                                            (("Depth", "1"), *XML.items())), read),
        "REPORT sync-collection": (lambda c: Request("REPORT", "alice/rendez-vous/", SYNC,
                                                     (("Depth", "1"), *XML.items())), read),
        "REPORT multiget": (lambda c: Request("REPORT", "alice/rendez-vous/", MULTIGET,
                                              (("Depth", "1"), *XML.items())), read),
        "GET item": (lambda c: Request("GET", ITEM),
                     {**read, OWNER: 200, ADMIN: 200}),
        "PUT new item": (lambda c: Request(
            "PUT", f"alice/rendez-vous/new-{col(c)}.ics", event_body(f"new-{col(c)}", "Ajout"),
            (("Content-Type", "text/calendar"),), writes=True),
            {**read, OWNER: 201, ADMIN: 201}),
        "PUT item (If-Match)": (lambda c: Request(
            "PUT", f"alice/rendez-vous/upd-{col(c)}.ics",
            event_body(f"upd-{col(c)}", f"Modifié par {c}"),
            (("Content-Type", "text/calendar"), ("If-Match", f"@upd-{col(c)}")), writes=True),
            {**read, OWNER: 204, ADMIN: 204}),
        "DELETE item": (lambda c: Request("DELETE", f"alice/rendez-vous/del-{col(c)}.ics",
                                          writes=True),
                        {**read, OWNER: 200, ADMIN: 200}),
        "DELETE calendar": (lambda c: Request("DELETE", "alice/rendez-vous/", writes=True),
                            {**read, OWNER: 403, ADMIN: 403}),
        "PROPPATCH calendar": (lambda c: Request(
            "PROPPATCH", "alice/rendez-vous/", PROPPATCH % col(c).encode(), tuple(XML.items()),
            writes=True), read),
        "MKCALENDAR": (lambda c: Request("MKCALENDAR", f"alice/cal-{col(c)}/", writes=True),
                       {**read, OWNER: 403, ADMIN: 403}),
        "MOVE item": (lambda c: Request(
            "MOVE", f"alice/rendez-vous/mv-{col(c)}.ics", writes=True,
            headers=(("Destination", f"/alice/rendez-vous/moved-{col(c)}.ics"),)),
            {**read, OWNER: 201, ADMIN: 201}),
        "MOVE item to bob's calendar": (lambda c: Request(
            "MOVE", f"alice/rendez-vous/mvb-{col(c)}.ics", writes=True,
            headers=(("Destination", f"/bob/rendez-vous/from-alice-{col(c)}.ics"),)),
            {**read, OWNER: 403, ADMIN: 201}),
        "POST /bridge/sync/close": (lambda c: Request(
            "POST", "bridge/sync/close", b"" if c == OWNER else b'{"user": "alice"}',
            (("Content-Type", "application/json"),), writes=True),
            {**read, OWNER: 200, ADMIN: 200}),
        "POST /bridge/sync/open": (lambda c: Request(
            "POST", "bridge/sync/open", b"" if c == OWNER else b'{"user": "alice"}',
            (("Content-Type", "application/json"),), writes=True),
            {**read, OWNER: 200, ADMIN: 200}),
        "GET /.web/ (web UI)": (lambda c: Request("GET", ".web/"),
                                {**dict.fromkeys(CALLERS, 200), WRONG: 401}),
    }


ROWS = _rows()
EXPECTED = {row: statuses for row, (_, statuses) in ROWS.items()}


@dataclass
class Cell:
    row: str
    caller: str
    expected: int
    answer: Exchange
    store_changed: bool
    leaked: bool

    @property
    def problems(self) -> list[str]:
        found = []
        if self.answer.problem:
            found.append(f"broken answer: {self.answer.problem}")
        if self.answer.status != self.expected:
            found.append(f"{self.answer.status}, expected {self.expected}")
        refused = (self.answer.status or 0) >= 400
        if refused and self.store_changed:
            found.append("refused but the store changed")
        if refused and self.leaked:
            found.append("refused but alice's appointment is in the answer")
        return found


def credentials(caller: str, passwords: dict[str, str]) -> dict[str, str]:
    login = {OWNER: "alice", OTHER: "bob", ADMIN: "carol", EX_ADMIN: "dave",
             WRONG: "alice"}.get(caller)
    if login is None:
        return {}
    password = "not-" + passwords[login] if caller == WRONG else passwords[login]
    return {"Authorization": basic(login, password)}


def prepare(put: Callable[[str, bytes], str]) -> dict[str, str]:
    """alice's items every column needs (``put(href, body) -> etag``); returns the etags
    by href, for the If-Match row."""
    etags = {"a1.ics": put("a1.ics", event_body("a1"))}
    for c in (*WRITERS, "refused"):
        for prefix in ("upd", "del", "mv", "mvb"):
            etags[f"{prefix}-{c}.ics"] = put(f"{prefix}-{c}.ics",
                                             event_body(f"{prefix}-{c}", f"{prefix} {c}"))
    return etags


def run_matrix(base_url: str, passwords: dict[str, str], fingerprint: Callable[[], tuple],
               etags: dict[str, str]) -> list[Cell]:
    """Every row as every caller (the owner first in each row: a good login ends the
    count of the wrong-password column's failures, as a real phone's would)."""
    cells = []
    for row, (build, expected) in ROWS.items():
        for caller in CALLERS:
            request = build(caller)
            headers = dict(request.headers)
            if headers.get("If-Match", "").startswith("@"):
                headers["If-Match"] = etags[headers["If-Match"][1:] + ".ics"]
            before = fingerprint()
            answer = exchange(base_url + request.path, request.method, request.body,
                              {**headers, **credentials(caller, passwords)}, timeout=30)
            changed = fingerprint() != before
            cells.append(Cell(row, caller, expected[caller], answer, changed,
                              SECRET_WORD in answer.body))
    return cells


def table(cells: list[Cell]) -> list[list[str]]:
    """Rows × callers: the status received, with ``≠`` where it is not the expected one."""
    by = {(c.row, c.caller): c for c in cells}
    lines = []
    for row in ROWS:
        line = [row]
        for caller in CALLERS:
            cell = by[(row, caller)]
            mark = "" if not cell.problems else " ≠"
            line.append(f"{cell.answer.status}{mark}")
        lines.append(line)
    return lines
