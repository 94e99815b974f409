"""A phone's PUT of one appointment, written from what :func:`bridge.ical.parse_object` read.

Radicale's own PUT reads the body with vobject, computing every VTIMEZONE's transitions
over thirty years (two thirds of the cost of a PUT), serializes it again, and hands that
text to the storage plugin, which parses it a third time. Here the body is parsed once: the
parsed object is stored, after vobject has checked, without converting any value, that
Radicale's reports will read the object too. The answers are Radicale 3.9's
(``radicale.app.put``: 201 or 204 with the ETag, 412, 409 ``no-uid-conflict``), but the
preconditions are checked inside the write's transaction (:class:`Precondition`), where no
other writer can come between the check and the write.
"""

from __future__ import annotations

import re
from datetime import datetime, time
from http import client

import vobject
from radicale import types

from bridge import radicale_compat as compat
from bridge.ical import series
from bridge.ical.model import InvalidObject, ParsedObject
from bridge.refusals import refusal
from bridge.store import Precondition, PreconditionFailed, Store, UidConflict

# What Radicale's reader removes before vobject reads a body (radicale.item.read_components):
# blank lines, and the trailing space Outlook leaves after a TZID.
_BLANK_LINES = re.compile(r"(?m)^[ \t]*\r?\n")
_TZID_SPACE = re.compile(r"(TZID|TZNAME)(:[^\r\n]+) (\r?\n)")
_TZID_PARAM_SPACE = re.compile(r"(TZID=[^:]+) (:)")


def check_readable(text: str) -> None:
    """Refuse (:class:`InvalidObject`) a text Radicale's vobject reader cannot read: its
    reports (filters it evaluates itself, ``<expand>``, free-busy) read stored objects with
    it. Lines and components only: the values were read by our parser."""
    text = _BLANK_LINES.sub("", text)
    text = _TZID_PARAM_SPACE.sub(r"\1\2", _TZID_SPACE.sub(r"\1\2\3", text))
    try:
        components = list(vobject.readComponents(text, allowQP=True, transform=False))
    except Exception as exc:  # vobject raises ParseError, ValueError, AttributeError...
        raise InvalidObject(f"the calendar object cannot be read: {exc}") from exc
    if len(components) != 1:
        raise InvalidObject("send exactly one VCALENDAR")


def check_limits(parsed: ParsedObject, text: str, max_size: int, max_occurrences: int
                 ) -> None:
    """Radicale's limits on one object, which its PUT checked and ours must too:
    ``[server] max_resource_size`` (its text) and ``max_vevent_rrule_occurrence`` (a rule's
    COUNT, or its UNTIL estimated as Radicale does: the span over the FREQ's length; 0 turns
    it off). Refused with the reason (Radicale answered a bare 400, or 412 for the size)."""
    if max_size and len(text.encode("utf-8")) > max_size:
        raise InvalidObject(f"the object is larger than {max_size} bytes "
                            "([server] max_resource_size)", 413)
    if not parsed.is_series or max_occurrences <= 0:
        return
    master = series.master_component(parsed.series_ics)
    start = master.decoded("DTSTART")
    rules = master.get("RRULE")
    for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
        counts, untils = rule.get("COUNT"), rule.get("UNTIL")
        if counts and int(counts[0]) > max_occurrences:
            raise InvalidObject(f"a rule with COUNT={int(counts[0])}: at most "
                                f"{max_occurrences} occurrences "
                                "([server] max_vevent_rrule_occurrence)")
        seconds = compat.RRULE_FREQUENCY_SECONDS.get(str(rule.get("FREQ", [""])[0]).upper())
        if untils and seconds:
            estimate = _span_seconds(start, untils[0]) / seconds
            if estimate > max_occurrences:
                raise InvalidObject(f"a rule until {untils[0]:%Y-%m-%d} makes about "
                                    f"{estimate:.0f} occurrences: at most {max_occurrences} "
                                    "([server] max_vevent_rrule_occurrence)")


def _span_seconds(start, until) -> float:
    """UNTIL minus DTSTART in seconds, Radicale's way: dates as midnight, a floating UNTIL
    in the start's zone."""
    def moment(value):
        if not isinstance(value, datetime):
            value = datetime.combine(value, time())
        return value

    start, until = moment(start), moment(until)
    if until.tzinfo is None and start.tzinfo is not None:
        until = until.replace(tzinfo=start.tzinfo)
    elif start.tzinfo is None and until.tzinfo is not None:
        start = start.replace(tzinfo=until.tzinfo)
    return (until - start).total_seconds()


def put(application, store: Store, environ, path: str, owner: str, href: str,
        parsed: ParsedObject, strict: bool, request_info: dict) -> types.WSGIResponse:
    """Write ``parsed`` at ``owner``'s ``href``, as Radicale answers a PUT."""
    precondition = Precondition(if_match=environ.get("HTTP_IF_MATCH", ""),
                                if_none_match=environ.get("HTTP_IF_NONE_MATCH", "") == "*",
                                strict=strict)
    with compat.storage(application).acquire_lock("w", owner, path=path):
        try:
            stored, created = store.write_object(owner, href, parsed, precondition)
        except PreconditionFailed as exc:
            return refusal(client.PRECONDITION_FAILED, str(exc))
        except UidConflict:
            return compat.webdav_error(application, client.CONFLICT, "C:no-uid-conflict",
                                       request_info)
    return (client.CREATED if created else client.NO_CONTENT), {"ETag": stored.etag}, None, None
