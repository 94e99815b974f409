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
from http import client

import vobject
from radicale import types

from bridge import radicale_compat as compat
from bridge.answers import refusal
from bridge.ical.model import InvalidObject, ParsedObject
from bridge.store import Precondition, PreconditionFailed, Store, UidConflict

# What Radicale's reader removes before vobject reads a body (radicale.item.read_components):
# blank lines, and the trailing space Outlook leaves after a TZID.
_BLANK_LINES = re.compile(r"(?m)^[ \t]*\r?\n")
_TZID_SPACE = re.compile(r"(TZID|TZNAME)(:[^\r\n]+) (\r?\n)")
_TZID_PARAM_SPACE = re.compile(r"(TZID=[^:]+) (:)")
_BEGIN_END = re.compile(r"(?im)^(BEGIN|END)[ \t]*:")
# VCALENDAR > VEVENT > VALARM is three levels; vobject's readers recurse once per level
# (Radicale's failed past a few hundred), and nothing real nests this deep.
MAX_NESTING = 8


def check_readable(text: str) -> None:
    """Refuse (:class:`InvalidObject`) a text Radicale's vobject reader cannot read: its
    reports (filters it evaluates itself, ``<expand>``, free-busy) read stored objects with
    it. Lines and components only: the values were read by our parser."""
    depth = deepest = 0
    for found in _BEGIN_END.finditer(text):
        depth += 1 if found.group(1).upper() == "BEGIN" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise InvalidObject(f"components nested {deepest} levels deep (at most "
                            f"{MAX_NESTING})")
    text = _BLANK_LINES.sub("", text)
    text = _TZID_PARAM_SPACE.sub(r"\1\2", _TZID_SPACE.sub(r"\1\2\3", text))
    try:
        components = list(vobject.readComponents(text, allowQP=True, transform=False))
    except Exception as exc:  # vobject raises ParseError, ValueError, AttributeError...
        raise InvalidObject(f"the calendar object cannot be read: {exc}") from exc
    if len(components) != 1:
        raise InvalidObject("send exactly one VCALENDAR")


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
