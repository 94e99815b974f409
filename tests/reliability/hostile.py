"""Hostile input against a running server: seeded mutations of real-world iCalendar PUTs and
hostile XML bodies, each answer judged (:mod:`tests.reliability.rawhttp`) and the store
compared before and after every refused request.

The iCalendar bases are what Apple Calendar (macOS, iOS), Google Calendar, Outlook and
Thunderbird write (``samples/``, two each: a single appointment and a series or an all-day
one); each is accepted as is. Mutation ``i`` of seed ``s`` is a pure function of ``(s, i)``:
a run can be repeated and a failing case named by its number.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import random
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

from bridge.store import Store
from tests.reliability.rawhttp import CANARY, Exchange, basic, exchange

SAMPLES = Path(__file__).with_name("samples")
Fingerprint = Callable[[], tuple]


def samples() -> dict[str, bytes]:
    """The real-world bases, by name, with the CRLF line ends clients send."""
    return {path.stem: path.read_text(encoding="utf-8").replace("\n", "\r\n").encode()
            for path in sorted(SAMPLES.glob("*.ics"))}


_UID_LINE = re.compile(rb"^UID:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", re.M)


def event_uid(body: bytes) -> bytes:
    """The first VEVENT's UID, unfolded."""
    vevent = body.index(b"BEGIN:VEVENT")
    found = _UID_LINE.search(body, vevent)
    assert found is not None, "a sample has a UID"
    return re.sub(rb"\r\n[ \t]", b"", found.group(1))


def with_uid(body: bytes, uid: bytes) -> bytes:
    """``body`` with its event's UID (on the master and every override) replaced."""
    old = event_uid(body)

    def swap(found: re.Match[bytes]) -> bytes:
        value = re.sub(rb"\r\n[ \t]", b"", found.group(1))
        return b"UID:" + uid if value == old else found.group(0)

    return _UID_LINE.sub(swap, body)


def store_fingerprint(store: Store) -> tuple:
    """What a refused request must leave as it was: every user's revision (the ctag and
    sync token come from it) and calendar properties, the row counts, the sync runs."""
    with store.reading() as conn:
        return (tuple(conn.execute(text(
                    "SELECT login, revision, calendar_props FROM users ORDER BY login"))),
                conn.execute(text("SELECT count(*) FROM calendar_objects")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM actions")).scalar_one(),
                conn.execute(text("SELECT count(*) FROM sync_runs")).scalar_one())


# ---------------------------------------------------------------- iCalendar mutations

@dataclass
class Case:
    """One hostile request."""

    kind: str                 # "ical" or "xml"
    name: str                 # the mutation or XML family
    method: str
    path: str                 # below the server's URL
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _lines(body: bytes) -> list[bytes]:
    return body.split(b"\r\n")


def _truncate(rng: random.Random, body: bytes, headers: dict) -> bytes:
    return body[:rng.randrange(len(body))]


def _byte_flips(rng: random.Random, body: bytes, headers: dict) -> bytes:
    data = bytearray(body)
    for _ in range(rng.choice((1, 2, 4, 8, 32))):
        position = rng.randrange(len(data))
        if rng.random() < 0.5:
            data[position] ^= 1 << rng.randrange(8)
        else:
            data[position] = rng.randrange(256)
    return bytes(data)


def _line_surgery(rng: random.Random, body: bytes, headers: dict) -> bytes:
    lines = _lines(body)
    for _ in range(rng.randint(1, 3)):
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        operation = rng.choice(("delete", "duplicate", "swap"))
        if operation == "delete":
            del lines[a]
        elif operation == "duplicate":
            lines.insert(a, lines[b])
        else:
            lines[a], lines[b] = lines[b], lines[a]
    return b"\r\n".join(lines)


def _deep_nesting(rng: random.Random, body: bytes, headers: dict) -> bytes:
    depth = rng.choice((10, 100, 1_000, 5_000, 50_000))
    name = rng.choice((b"X-NEST", b"VALARM", b"VEVENT", b"VCALENDAR", b"VTIMEZONE"))
    nest = b"".join(b"BEGIN:%s\r\n" % name for _ in range(depth))
    nest += b"".join(b"END:%s\r\n" % name for _ in range(depth))
    if rng.random() < 0.2:
        nest = nest[:len(nest) // 2]  # never closed
    at = body.index(b"END:VEVENT")
    return body[:at] + nest + body[at:]


def _huge_property(rng: random.Random, body: bytes, headers: dict) -> bytes:
    size = rng.choice((10_000, 100_000, 600_000, 2_000_000, 5_000_000))
    filler = rng.choice((b"a", "é".encode(), b"\\n", b"\\,", b"x" * 63 + b"\r\n "))
    payload = filler * (size // len(filler))
    variant = rng.choice(("summary", "description", "x-prop", "param", "many", "no-colon"))
    if variant == "summary":
        line = b"SUMMARY:" + payload
        body = re.sub(rb"^SUMMARY[;:][^\r\n]*", lambda m: line, body, count=1, flags=re.M)
        return body
    if variant == "description":
        line = b"DESCRIPTION:" + payload
    elif variant == "x-prop":
        line = b"X-" + CANARY.upper().encode() + b"-HUGE:" + payload
    elif variant == "param":
        line = b"X-PARAM;X-P=\"" + payload.replace(b"\"", b"") + b"\":v"
    elif variant == "many":
        count = max(1, size // 16)
        line = b"\r\n".join(b"X-P%d:v" % n for n in range(count))
    else:
        line = payload.replace(b":", b"")
    at = body.index(b"END:VEVENT")
    return body[:at] + line + b"\r\n" + body[at:]


def _line_endings(rng: random.Random, body: bytes, headers: dict) -> bytes:
    lines = _lines(body)
    variant = rng.choice(("lf", "cr", "mixed", "lfcr"))
    if variant == "lf":
        return b"\n".join(lines)
    if variant == "cr":
        return b"\r".join(lines)
    if variant == "lfcr":
        return b"\n\r".join(lines)
    ends = (b"\r\n", b"\n", b"\r", b"\r\r\n")
    return b"".join(line + rng.choice(ends) for line in lines)


def _encoding(rng: random.Random, body: bytes, headers: dict) -> bytes:
    variant = rng.choice(("utf-16", "utf-16-be", "utf-32", "latin-1", "bom", "overlong",
                          "surrogate", "nul", "controls", "gzip", "bad-gzip", "brotli",
                          "mojibake"))
    text_ = body.decode("utf-8")
    if variant in ("utf-16", "utf-16-be", "utf-32"):
        return text_.encode(variant)
    if variant == "latin-1":
        return text_.encode("latin-1", "replace")
    if variant == "bom":
        return b"\xef\xbb\xbf" + body
    if variant == "mojibake":
        return text_.encode("utf-8").decode("latin-1").encode("utf-8")
    at = rng.randrange(body.index(b"BEGIN:VEVENT"), len(body))
    if variant == "overlong":
        return body[:at] + b"\xc0\xaf\xe0\x80\xaf" + body[at:]
    if variant == "surrogate":
        return body[:at] + b"\xed\xa0\x80" + body[at:]
    if variant == "nul":
        return body[:at] + b"\x00" * rng.randint(1, 4) + body[at:]
    if variant == "controls":
        return body[:at] + bytes(rng.choice((1, 8, 11, 12, 27, 127)) for _ in range(3)) + body[at:]
    if variant == "gzip":
        headers["Content-Encoding"] = "gzip"
        return gzip.compress(body)
    if variant == "bad-gzip":
        headers["Content-Encoding"] = "gzip"
        return gzip.compress(body)[: rng.randint(5, 60)]
    headers["Content-Encoding"] = "br"
    return body


NASTY_VALUES = [
    b"", b"\\", b";;;;", b"::::", b"99999999999999999999999", b"P99999999W", b"-P1D",
    b"PT-5M", b"20261301T250000", b"00000000T000000", b"99991231T235959Z", b"1900-01-01",
    b"FREQ=DAILY;COUNT=\\", b"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", b"FREQ=SECONDLY",
    b"FREQ=MINUTELY;INTERVAL=1", b"FREQ=DAILY;UNTIL=19000101", b"FREQ=DAILY;INTERVAL=0",
    b"FREQ=DAILY;COUNT=999999999", b"FREQ=WEEKLY;BYDAY=" + b"MO," * 2000 + b"TU",
    b"FREQ=MONTHLY;BYSETPOS=400;BYDAY=MO", b"FREQ=YEARLY;BYWEEKNO=54", b"FREQ=HOURLY;BYHOUR=25",
    b"FREQ=DAILY;INTERVAL=-1", b"FREQ=NEVER", b"FREQ=YEARLY;BYYEARDAY=366;BYMONTH=2",
    b"x\\nSet-Cookie: " + CANARY.encode() + b"=1", b"x\\r\\nX-" + CANARY.encode() + b": 1",
    b"\\N\\N\\N\\r" + CANARY.encode(), b"mailto:" + b"a" * 300,
]
_PROPERTY_LINE = re.compile(rb"^(DTSTART|DTEND|DURATION|RRULE|EXDATE|RECURRENCE-ID|UID|SUMMARY|"
                            rb"STATUS|TRIGGER|TZID|TZOFFSETFROM|SEQUENCE|LOCATION|ATTENDEE|"
                            rb"DTSTAMP|CREATED)([;:][^\r\n]*)$", re.M)


def _value_garbage(rng: random.Random, body: bytes, headers: dict) -> bytes:
    lines = list(_PROPERTY_LINE.finditer(body))
    found = rng.choice(lines)
    name, rest = found.group(1), found.group(2)
    params = rest.rsplit(b":", 1)[0] if b":" in rest[1:] else b""
    value = rng.choice(NASTY_VALUES)
    return body[:found.start()] + name + params + b":" + value + body[found.end():]


def _hostile_rrule(rng: random.Random, body: bytes, headers: dict) -> bytes:
    rule = rng.choice([v for v in NASTY_VALUES if v.startswith(b"FREQ")])
    at = body.index(b"\r\n", body.index(b"BEGIN:VEVENT")) + 2
    return body[:at] + b"RRULE:" + rule + b"\r\n" + body[at:]


_PARAM_GARBAGE = [
    b"TZID=Mars/Olympus", b"TZID=\"unterminated", b"VALUE=BINARY;ENCODING=BASE64",
    b"VALUE=DATE", b"VALUE=PERIOD", b"TZID=" + b"A" * 5000,
    b";".join(b"X-P%d=v" % n for n in range(5000)),
    b"TZID=\"Europe/Paris\\nSet-Cookie: " + CANARY.encode() + b"=1\"",
    b"X-" + CANARY.upper().encode() + b"=\"a\r\nb\"",
]


def _param_garbage(rng: random.Random, body: bytes, headers: dict) -> bytes:
    found = rng.choice(list(re.finditer(rb"^(DTSTART|DTEND|EXDATE|RECURRENCE-ID)(;[^:\r\n]*)?:",
                                        body, re.M)))
    return (body[:found.start()] + found.group(1) + b";" + rng.choice(_PARAM_GARBAGE) + b":"
            + body[found.end():])


def _header_injection(rng: random.Random, body: bytes, headers: dict) -> bytes:
    """A UID (or SUMMARY) with escaped line ends, which icalendar turns into real ones: a
    server quoting it in a status line or header would let the client write headers."""
    evil = rng.choice((b"\\nSet-Cookie: %s=1", b"\\r\\nX-Injected: %s", b"\\rHTTP/1.1 200 OK %s",
                       b"\\n\\n%s body"))
    evil = evil % CANARY.encode()
    if rng.random() < 0.5:
        return with_uid(body, event_uid(body) + evil)
    # a second VEVENT of another UID: refused with a reason that quotes both UIDs
    second = (b"BEGIN:VEVENT\r\nUID:" + evil + b"\r\nDTSTART:20270101T100000Z\r\n"
              b"DTSTAMP:20261201T000000Z\r\nEND:VEVENT\r\n")
    at = body.index(b"END:VCALENDAR")
    return body[:at] + second + body[at:]


def _fold_breakage(rng: random.Random, body: bytes, headers: dict) -> bytes:
    variant = rng.choice(("mid-utf8", "leading", "tab", "every-byte"))
    if variant == "leading":
        return b" " + body.replace(b"BEGIN:VEVENT\r\n", b"BEGIN:VEVENT\r\n \r\n\t\r\n", 1)
    multi = [m.start() for m in re.finditer(rb"[\xc0-\xf4]", body)]
    if variant == "mid-utf8" and multi:
        at = rng.choice(multi) + 1
        return body[:at] + b"\r\n " + body[at:]
    if variant == "tab":
        return body.replace(b"\r\n ", b"\r\n\t")
    start = body.index(b"SUMMARY")
    end = body.index(b"\r\n", start)
    return body[:start] + b"\r\n ".join(body[i:i + 1] for i in range(start, end)) + body[end:]


_COMPONENTS = [
    b"BEGIN:VTODO\r\nUID:t\r\nSUMMARY:t\r\nEND:VTODO\r\n",
    b"BEGIN:VJOURNAL\r\nUID:j\r\nEND:VJOURNAL\r\n",
    b"BEGIN:VFREEBUSY\r\nUID:f\r\nFREEBUSY:20270101T100000Z/PT1H\r\nEND:VFREEBUSY\r\n",
    b"END:VEVENT\r\n", b"BEGIN:VEVENT\r\n", b"END:VCALENDAR\r\nBEGIN:VCALENDAR\r\n",
    b"BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n", b"BEGIN:\r\nEND:\r\n",
    b"BEGIN:VTIMEZONE\r\nTZID:" + CANARY.encode() + b"\r\nEND:VTIMEZONE\r\n",
]


def _component_garbage(rng: random.Random, body: bytes, headers: dict) -> bytes:
    lines = _lines(body)
    at = rng.randrange(1, len(lines))
    return b"\r\n".join(lines[:at]) + b"\r\n" + rng.choice(_COMPONENTS) + b"\r\n".join(lines[at:])


MUTATIONS: dict[str, Callable[[random.Random, bytes, dict], bytes]] = {
    "truncation": _truncate, "byte-flips": _byte_flips, "line-surgery": _line_surgery,
    "deep-nesting": _deep_nesting, "huge-property": _huge_property,
    "line-endings": _line_endings, "encoding": _encoding, "value-garbage": _value_garbage,
    "hostile-rrule": _hostile_rrule, "param-garbage": _param_garbage,
    "header-injection": _header_injection, "fold-breakage": _fold_breakage,
    "component-garbage": _component_garbage,
}


def ical_case(seed: int, number: int, bases: dict[str, bytes], login: str = "alice") -> Case:
    """Mutation ``number`` of ``seed``: a base (in turn), a unique UID, one to three
    mutations (about one case in five combines them)."""
    rng = random.Random(f"{seed}:ical:{number}")
    base_name = sorted(bases)[number % len(bases)]
    base = bases[base_name]
    body = with_uid(base, b"%s-%d-" % (CANARY.encode(), number) + event_uid(base))
    count = 1 if rng.random() < 0.8 else rng.randint(2, 3)
    names = [rng.choice(sorted(MUTATIONS)) for _ in range(count)]
    headers = {"Content-Type": "text/calendar; charset=utf-8"}
    for name in names:
        # an earlier mutation may have removed what this one works on: keep the body
        with contextlib.suppress(ValueError, IndexError, UnicodeDecodeError):
            body = MUTATIONS[name](rng, body, headers)
    return Case("ical", "+".join(names), "PUT", f"{login}/rendez-vous/m{number}.ics", body,
                headers)


# ---------------------------------------------------------------- hostile XML

DAV = b'xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"'


PROLOG = b'<?xml version="1.0" encoding="utf-8"?>'


def _propfind(inner: bytes = b"<prop><getetag/></prop>", prolog: bytes = PROLOG) -> bytes:
    return prolog + b"<propfind " + DAV + b">" + inner + b"</propfind>"


def _query(inner: bytes) -> bytes:
    return (b'<?xml version="1.0" encoding="utf-8"?><C:calendar-query ' + DAV + b">" + inner
            + b"</C:calendar-query>")


def _xml_dtd(rng: random.Random) -> tuple[str, bytes]:
    variant = rng.choice(("internal", "external-file", "external-http", "parameter",
                          "doctype-only"))
    decl = {
        "internal": b'<!DOCTYPE d [<!ENTITY e "' + CANARY.encode() + b'">]>',
        "external-file": b'<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        "external-http": b'<!DOCTYPE d [<!ENTITY e SYSTEM "http://127.0.0.1:9/x">]>',
        "parameter": b'<!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/hostname"> %p;]>',
        "doctype-only": b'<!DOCTYPE propfind SYSTEM "http://127.0.0.1:9/dav.dtd">',
    }[variant]
    return f"dtd-{variant}", (b'<?xml version="1.0"?>' + decl + b"<propfind " + DAV
                              + b"><prop><getetag/>&e;</prop></propfind>")


def _xml_entities(rng: random.Random) -> tuple[str, bytes]:
    levels = rng.randint(3, 10)
    entities = b'<!ENTITY l0 "' + CANARY.encode() * 4 + b'">'
    entities += b"".join(b'<!ENTITY l%d "%s">' % (n, b"&l%d;" % (n - 1) * 10)
                         for n in range(1, levels))
    if rng.random() < 0.3:  # quadratic blowup: one large entity used many times
        entities = b'<!ENTITY l0 "' + b"a" * 50_000 + b'">'
        ref = b"&l0;" * 2_000
    else:
        ref = b"&l%d;" % (levels - 1)
    prolog = b'<?xml version="1.0"?><!DOCTYPE d [' + entities + b"]>"
    return f"entities-{levels}", _propfind(b"<prop>" + ref + b"</prop>", prolog)


def _xml_deep(rng: random.Random) -> tuple[str, bytes]:
    depth = rng.choice((65, 100, 1_000, 10_000, 100_000, 1_000_000))
    tag = rng.choice((b"a", b"prop", b"C:comp-filter name=\"VEVENT\""))
    close = tag.split(b" ")[0]
    nest = b"<%s>" % tag * depth + b"</%s>" % close * depth
    if rng.random() < 0.2:
        nest = nest[: len(nest) // 2]
    return f"deep-{depth}", _propfind(b"<prop>" + nest + b"</prop>")


def _xml_huge(rng: random.Random) -> tuple[str, bytes]:
    size = rng.choice((1_000_000, 3_000_000, 4_500_000, 11_000_000))
    variant = rng.choice(("text", "attribute", "elements", "whitespace", "namespaces",
                          "comment"))
    if variant == "text":
        inner = b"<prop><displayname>" + b"x" * size + b"</displayname></prop>"
    elif variant == "attribute":
        inner = b'<prop><getetag a="' + b"x" * size + b'"/></prop>'
    elif variant == "elements":
        inner = b"<prop>" + b"<getetag/>" * (size // 10) + b"</prop>"
    elif variant == "whitespace":
        inner = b" " * size + b"<prop><getetag/></prop>"
    elif variant == "namespaces":
        inner = b"<prop " + b" ".join(b'xmlns:n%d="urn:%d"' % (n, n)
                                      for n in range(size // 24)) + b"><getetag/></prop>"
    else:
        inner = b"<!--" + b"c" * size + b"--><prop><getetag/></prop>"
    return f"huge-{variant}-{size // 1_000_000}MB", _propfind(inner)


def _xml_malformed(rng: random.Random) -> tuple[str, bytes]:
    good = _propfind()
    variant = rng.choice(("truncated", "utf16-declared-utf8", "invalid-utf8", "nul", "no-root",
                          "two-roots", "bad-namespace", "xinclude", "pi", "cdata"))
    body = {
        "truncated": good[: rng.randrange(10, len(good) - 1)],
        "utf16-declared-utf8": good.decode().encode("utf-16"),
        "invalid-utf8": good.replace(b"getetag", b"get\xff\xfeetag"),
        "nul": good.replace(b"<prop>", b"<prop>\x00"),
        "no-root": b'<?xml version="1.0"?>',
        "two-roots": good + good,
        "bad-namespace": good.replace(b'xmlns="DAV:"', b'xmlns="DAV:" xmlns:x="'),
        "xinclude": _propfind(b'<prop xmlns:xi="http://www.w3.org/2001/XInclude">'
                              b'<xi:include href="file:///etc/passwd" parse="text"/></prop>'),
        "pi": _propfind(prolog=PROLOG + b'<?xml-stylesheet href="http://127.0.0.1:9/"?>'),
        "cdata": _propfind(b"<prop><![CDATA[" + CANARY.encode() * 1000 + b"]]></prop>"),
    }[variant]
    return f"malformed-{variant}", body


def _xml_caldav(rng: random.Random) -> tuple[str, bytes]:
    variant = rng.choice(("expand-forever", "time-range-garbage", "text-match-huge",
                          "sync-token-garbage", "multiget-many", "multiget-traversal",
                          "comp-filter-deep", "limit-huge", "unknown-report",
                          "free-busy-forever", "free-busy-without-range"))
    if variant == "expand-forever":
        body = _query(b'<prop><C:calendar-data><C:expand start="00010101T000000Z" '
                      b'end="99991231T235959Z"/></C:calendar-data></prop><C:filter>'
                      b'<C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
                      b'<C:time-range start="00010101T000000Z" end="99991231T235959Z"/>'
                      b"</C:comp-filter></C:comp-filter></C:filter>")
    elif variant == "time-range-garbage":
        start = rng.choice((b"yesterday", b"20261301T000000Z", b"-1", b"" , b"9" * 40))
        body = _query(b'<prop><getetag/></prop><C:filter><C:comp-filter name="VCALENDAR">'
                      b'<C:comp-filter name="VEVENT"><C:time-range start="' + start
                      + b'" end="20270101T000000Z"/></C:comp-filter></C:comp-filter></C:filter>')
    elif variant == "text-match-huge":
        body = _query(b'<prop><getetag/></prop><C:filter><C:comp-filter name="VCALENDAR">'
                      b'<C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY">'
                      b'<C:text-match collation="i;' + CANARY.encode() + b'">' + b"%" * 100_000
                      + b"</C:text-match></C:prop-filter></C:comp-filter></C:comp-filter>"
                      b"</C:filter>")
    elif variant == "sync-token-garbage":
        token = rng.choice((b"http://radicale.org/ns/sync/" + b"f" * 5000, b"../../etc",
                            CANARY.encode() + b"\r\nX: 1", b"\xff\xfe"))
        body = (b'<?xml version="1.0"?><sync-collection ' + DAV + b"><sync-token>" + token
                + b"</sync-token><sync-level>1</sync-level><prop><getetag/></prop>"
                  b"</sync-collection>")
    elif variant in ("multiget-many", "multiget-traversal"):
        if variant == "multiget-many":
            hrefs = b"".join(b"<href>/alice/rendez-vous/%d.ics</href>" % n for n in range(20_000))
        else:
            hrefs = (b"<href>/alice/rendez-vous/../../bob/rendez-vous/bob-1.ics</href>"
                     b"<href>/bob/rendez-vous/bob-1.ics</href><href>/%2e%2e/bob/</href>"
                     b"<href>http://evil.example/" + CANARY.encode() + b"</href>")
        body = (b'<?xml version="1.0"?><C:calendar-multiget ' + DAV + b"><prop><getetag/>"
                b"<C:calendar-data/></prop>" + hrefs + b"</C:calendar-multiget>")
    elif variant == "comp-filter-deep":
        depth = rng.choice((20, 60))
        nest = b'<C:comp-filter name="VEVENT">' * depth + b"</C:comp-filter>" * depth
        body = _query(b'<prop><getetag/></prop><C:filter><C:comp-filter name="VCALENDAR">'
                      + nest + b"</C:comp-filter></C:filter>")
    elif variant == "limit-huge":
        body = _query(b'<prop><getetag/></prop><C:filter><C:comp-filter name="VCALENDAR"/>'
                      b"</C:filter><C:limit><C:nresults>99999999999999999999</C:nresults>"
                      b"</C:limit>")
    elif variant == "free-busy-forever":
        body = (b'<?xml version="1.0"?><C:free-busy-query ' + DAV + b'><C:time-range '
                b'start="00010101T000000Z" end="99991231T235959Z"/></C:free-busy-query>')
    elif variant == "free-busy-without-range":
        body = b'<?xml version="1.0"?><C:free-busy-query ' + DAV + b"/>"
    else:
        body = b'<?xml version="1.0"?><x:' + CANARY.encode() + b' xmlns:x="urn:x"/>'
    return f"caldav-{variant}", body


def _xml_proppatch(rng: random.Random) -> tuple[str, bytes]:
    variant = rng.choice(("component-set", "remove-resourcetype", "huge-displayname",
                          "many-props", "control-chars"))
    props = {
        "component-set": b'<C:supported-calendar-component-set><C:comp name="VTODO"/>'
                         b"</C:supported-calendar-component-set>",
        "remove-resourcetype": b"<resourcetype/>",
        "huge-displayname": b"<displayname>" + b"n" * 2_000_000 + b"</displayname>",
        "many-props": b"".join(b'<x:p%d xmlns:x="urn:x">v</x:p%d>' % (n, n)
                               for n in range(20_000)),
        "control-chars": b"<displayname>&#1;&#27;" + CANARY.encode() + b"</displayname>",
    }[variant]
    verb = b"remove" if variant == "remove-resourcetype" else b"set"
    return f"proppatch-{variant}", (b'<?xml version="1.0"?><propertyupdate ' + DAV + b"><"
                                    + verb + b"><prop>" + props + b"</prop></" + verb
                                    + b"></propertyupdate>")


XML_FAMILIES: list[tuple[Callable[[random.Random], tuple[str, bytes]], tuple[str, ...]]] = [
    (_xml_dtd, ("PROPFIND", "REPORT", "PROPPATCH", "MKCALENDAR")),
    (_xml_entities, ("PROPFIND", "REPORT", "PROPPATCH")),
    (_xml_deep, ("PROPFIND", "REPORT", "PROPPATCH")),
    (_xml_huge, ("PROPFIND", "REPORT", "PROPPATCH")),
    (_xml_malformed, ("PROPFIND", "REPORT", "PROPPATCH", "MKCALENDAR")),
    (_xml_caldav, ("REPORT",)),
    (_xml_proppatch, ("PROPPATCH",)),
]


def xml_case(seed: int, number: int, login: str = "alice") -> Case:
    rng = random.Random(f"{seed}:xml:{number}")
    family, methods = XML_FAMILIES[number % len(XML_FAMILIES)]
    name, body = family(rng)
    method = rng.choice(methods)
    path = rng.choice((f"{login}/rendez-vous/", f"{login}/", ""))
    if method == "MKCALENDAR":
        path = f"{login}/other-{number}/"
    return Case("xml", name, method, path, body, {
        "Content-Type": "application/xml; charset=utf-8", "Depth": rng.choice(("0", "1"))})


# ---------------------------------------------------------------- issue 12's own inputs

def _event(extra: bytes = b"", uid: bytes = b"i12", end: bytes = b"DTEND:20270105T110000Z"
           ) -> bytes:
    return (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//i12//EN\r\nBEGIN:VEVENT\r\nUID:"
            + uid + b"\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:20270105T100000Z\r\n" + end
            + b"\r\nSUMMARY:issue 12\r\n" + extra + b"END:VEVENT\r\nEND:VCALENDAR\r\n")


def issue12_cases(login: str = "alice") -> list[tuple[Case, int]]:
    """Each input issue 12 names (500s, broken answers, header injection, slow rules,
    ignored or stripped bodies), with the status it must now get: always run, whatever the
    seed."""
    calendar = f"{login}/rendez-vous/"
    ics = {"Content-Type": "text/calendar"}
    xml = {"Content-Type": "application/xml", "Depth": "1"}
    expand = (b'<?xml version="1.0"?><C:calendar-query ' + DAV + b"><prop><C:calendar-data>"
              b'<C:expand start="00010101T000000Z" end="99991231T000000Z"/></C:calendar-data>'
              b'</prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
              b'<C:time-range start="00010101T000000Z" end="99991231T000000Z"/>'
              b"</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")
    second = _event(uid=b"x\\nSet-Cookie: " + CANARY.encode() + b"=1").split(b"BEGIN:VEVENT")[1]
    cases = [
        ("RRULE COUNT=\\", "PUT", calendar + "i1.ics",
         _event(b"RRULE:FREQ=DAILY;COUNT=\\\r\n"), ics, 400),
        ("DURATION:P99999999W", "PUT", calendar + "i2.ics",
         _event(end=b"DURATION:P99999999W"), ics, 400),
        ("RRULE February 30 (never occurs)", "PUT", calendar + "i3.ics",
         _event(b"RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30\r\n"), ics, 400),
        ("RRULE BYWEEKNO=54 (never occurs)", "PUT", calendar + "i3b.ics",
         _event(b"RRULE:FREQ=YEARLY;BYWEEKNO=54\r\n"), ics, 400),
        ("RRULE day 366 of February, hourly (never occurs)", "PUT", calendar + "i3c.ics",
         _event(b"RRULE:FREQ=HOURLY;BYYEARDAY=366;BYMONTH=2\r\n"), ics, 400),
        ("RRULE week 1 in June (never occurs, walked)", "PUT", calendar + "i3d.ics",
         _event(b"RRULE:FREQ=YEARLY;BYWEEKNO=1;BYMONTH=6\r\n"), ics, 400),
        ("UID with \\n quoted in the reason", "PUT", calendar + "i4.ics",
         _event().replace(b"END:VCALENDAR", b"BEGIN:VEVENT" + second.split(b"END:VCALENDAR")[0]
                          + b"END:VCALENDAR"), ics, 400),
        ("NUL byte in the body", "PUT", calendar + "i5.ics",
         _event().replace(b"issue 12", b"issue\x0012"), ics, 400),
        ("chunked PUT", "PUT", calendar + "i6.ics",
         b"%x\r\n%s\r\n0\r\n\r\n" % (len(_event()), _event()),
         {**ics, "Transfer-Encoding": "chunked"}, 411),
        ("Content-Length: -5", "PUT", calendar + "i7.ics", b"", {**ics, "Content-Length": "-5"},
         400),
        ("XML with a DTD", "PROPFIND", calendar, _xml_dtd(random.Random(0))[1], xml, 400),
        ("XML 100,000 deep", "PROPFIND", calendar,
         _propfind(b"<prop>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</prop>"), xml, 400),
        ("<expand> from year 1 to 9999", "REPORT", calendar, expand, xml, 400),
        ('{"days_back": 1e309}', "POST", "bridge/sync/open", b'{"days_back": 1e309}',
         {"Content-Type": "application/json"}, 400),
        ("JSON 30,000 deep", "POST", "bridge/sync/open", b"[" * 30_000 + b"]" * 30_000,
         {"Content-Type": "application/json"}, 400),
        ("Authorization: Basic without a colon", "PROPFIND", calendar, b"",
         {"Authorization": "Basic " + base64.b64encode(login.encode()).decode(), "Depth": "0"},
         401),
    ]
    return [(Case("issue12", name, method, path, body, headers), status)
            for name, method, path, body, headers, status in cases]


# ---------------------------------------------------------------- the run

READ_ONLY = {"PROPFIND", "REPORT", "GET", "OPTIONS"}
# What the server says when vobject, the reader Radicale's reports use, refuses a body our
# parser passed (bridge/caldav_put.py check_readable).
RELAYED = b"the calendar object cannot be read: "


def has_reason(answer: Exchange) -> bool:
    """Whether a refusal says why in its body: ``400 Bad Request: <why>`` (our refusals),
    a ``DAV:error`` naming the failed precondition with a ``DAV:responsedescription``, or
    the sync triggers' JSON ``error``. Radicale's bare "Bad Request", "Access to the
    requested resource forbidden." or ``DAV:error`` alone say nothing."""
    body = answer.body.strip()
    prefix = f"{answer.status} {answer.reason}: ".encode()
    if body.startswith(prefix):
        return bool(body[len(prefix):].strip())
    if body.startswith(b"{"):
        with contextlib.suppress(ValueError):
            found = json.loads(body)
            return isinstance(found, dict) and bool(str(found.get("error") or "").strip())
        return False
    with contextlib.suppress(ET.ParseError):
        root = ET.fromstring(body)
        description = root.findtext("{DAV:}responsedescription") or ""
        return root.tag == "{DAV:}error" and len(root) > 1 and bool(description.strip())
    return False


@dataclass
class Outcome:
    case: Case
    number: int
    answer: Exchange
    store_changed: bool
    expected: int | None = None   # the status an issue-12 input must get

    @property
    def refused(self) -> bool:
        return self.answer.status is None or self.answer.status >= 400

    @property
    def without_reason(self) -> bool:
        """A refusal whose body does not say why (:func:`has_reason`)."""
        return self.answer.status is not None and self.refused and not has_reason(self.answer)

    @property
    def store_violation(self) -> bool:
        """A refused (or read-only) request that changed the store."""
        return self.store_changed and (self.refused or self.case.method in READ_ONLY)


@dataclass
class HostileReport:
    outcomes: list[Outcome]
    alive: bool = False
    seconds: float = 0.0

    def of(self, kind: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.case.kind == kind]

    def by_status(self, kind: str) -> Counter:
        return Counter(o.answer.status or 0 for o in self.of(kind))

    def server_errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if (o.answer.status or 0) >= 500]

    def broken(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.answer.problem]

    def store_violations(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.store_violation]

    def without_reason(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.without_reason]

    def relayed(self) -> list[Outcome]:
        """Refusals whose reason is vobject's (what our parser let through)."""
        return [o for o in self.outcomes if o.refused and RELAYED in o.answer.body[:200]]

    def failures(self) -> list[str]:
        """Every wrong answer, one line each (empty: the run passed)."""
        lines = [f"{o.case.kind} #{o.number} {o.case.name} {o.case.method}: "
                 f"{o.answer.status} {o.answer.problem or ''} {o.answer.body[:160]!r}"
                 for o in self.server_errors() + self.broken()]
        lines += [f"{o.case.kind} #{o.number} {o.case.name} {o.case.method}: refused "
                  f"({o.answer.status}) but the store changed" for o in self.store_violations()]
        lines += [f"{o.case.kind} #{o.number} {o.case.name} {o.case.method} {o.case.path}: "
                  f"refused ({o.answer.status}) without a reason: {o.answer.body[:120]!r}"
                  for o in self.without_reason()]
        lines += [f"issue 12: {o.case.name}: {o.answer.status}, expected {o.expected}"
                  for o in self.outcomes
                  if o.expected is not None and o.answer.status != o.expected]
        if not self.alive:
            lines.append("the server no longer answers a plain PROPFIND")
        return lines


def run_hostile(base_url: str, login: str, password: str, fingerprint: Fingerprint,
                mutations: int, xml_bodies: int, seed: int = 12,
                progress: Callable[[int], None] | None = None) -> HostileReport:
    """Send issue 12's own inputs, ``mutations`` mutated iCalendar PUTs and ``xml_bodies``
    hostile XML bodies, one at a time, comparing ``fingerprint()`` before and after each."""
    import time

    started = time.perf_counter()
    bases = samples()
    auth = {"Authorization": basic(login, password)}
    cases: list[tuple[int, Case, int | None]] = [
        (n, case, status) for n, (case, status) in enumerate(issue12_cases(login))]
    cases += [(n, ical_case(seed, n, bases, login), None) for n in range(mutations)]
    cases += [(n, xml_case(seed, n, login), None) for n in range(xml_bodies)]
    outcomes = []
    before = fingerprint()
    for done, (number, case, expected) in enumerate(cases, 1):
        answer = exchange(base_url + case.path, case.method, case.body, {**auth, **case.headers})
        after = fingerprint()
        outcomes.append(Outcome(case, number, answer, after != before, expected))
        before = after
        if progress:
            progress(done)
    alive = exchange(base_url + f"{login}/rendez-vous/", "PROPFIND", b"",
                     {**auth, "Depth": "0"}, timeout=10)
    return HostileReport(outcomes, alive=alive.status == 207 and alive.problem is None,
                         seconds=time.perf_counter() - started)
