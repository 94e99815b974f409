"""The two REPORTs phones send most, answered straight from SQL rows.

A phone's sync is a ``sync-collection`` (what changed since my token?) then a
``calendar-multiget`` (give me those), asking for ``getetag`` and ``calendar-data``. Radicale
answers them generically: for every item it re-sanitises paths several times, checks rights
and builds the XML through its item objects, which made up most of a full sync's time.
For exactly these requests on a user's Rendez-vous calendar we build the same multistatus
from the stored rows; any other shape (filters, expand, other properties, a token we did not
issue) is left to Radicale unchanged.

A sync may carry ``DAV:limit`` (RFC 6578 section 3.7: a phone with a small page on a large
calendar): at most that many members, then a 507 response for the collection and a token
to continue from; Radicale ignores the limit.
"""

from __future__ import annotations

import io
import posixpath
import xml.etree.ElementTree as ET
from http import client
from urllib.parse import unquote, urlparse

from defusedxml import ElementTree as DefusedET
from radicale import pathutils, xmlutils
from radicale.app.base import Access

from bridge.store import Store, StoredObject
from plugins.common import CALENDAR_NAME, calendar_owner

_C = xmlutils.make_clark
GETETAG, CALENDAR_DATA, CONTENT_TYPE = _C("D:getetag"), _C("C:calendar-data"), _C(
    "D:getcontenttype")
SERVED = {GETETAG, CALENDAR_DATA, CONTENT_TYPE}
SYNC, MULTIGET = _C("D:sync-collection"), _C("C:calendar-multiget")
CONTENT_TYPE_TEXT = "text/calendar;charset=utf-8;component=VEVENT"
OK, NOT_FOUND = xmlutils.make_response(200), xmlutils.make_response(404)
LIMIT, NRESULTS = _C("D:limit"), _C("D:nresults")


def _element(tag: str, text: str | None = None) -> ET.Element:
    element = ET.Element(tag)
    element.text = text
    return element


def _found(href: str, stored: StoredObject, props: list[str]) -> ET.Element:
    response = ET.Element(_C("D:response"))
    response.append(_element(_C("D:href"), href))
    propstat = ET.SubElement(response, _C("D:propstat"))
    prop = ET.SubElement(propstat, _C("D:prop"))
    for tag in props:
        if tag == GETETAG:
            prop.append(_element(tag, stored.etag))
        elif tag == CALENDAR_DATA:
            prop.append(_element(tag, stored.ics))
        else:
            prop.append(_element(tag, CONTENT_TYPE_TEXT))
    propstat.append(_element(_C("D:status"), OK))
    return response


def _missing(href: str) -> ET.Element:
    response = ET.Element(_C("D:response"))
    response.append(_element(_C("D:href"), href))
    response.append(_element(_C("D:status"), NOT_FOUND))
    return response


def _limit(root: ET.Element) -> int | None:
    """The ``DAV:limit`` of a sync (None: none; 0: one that is not a positive number)."""
    element = root.find(LIMIT)
    if element is None:
        return None
    text = (element.findtext(NRESULTS) or "").strip()
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 2 ** 31 else 0


def _truncated(href: str) -> ET.Element:
    """RFC 6578 section 3.6: the collection's 507, saying the answer stops at the limit."""
    response = ET.Element(_C("D:response"))
    response.append(_element(_C("D:href"), href))
    response.append(_element(_C("D:status"), xmlutils.make_response(507)))
    error = ET.SubElement(response, _C("D:error"))
    ET.SubElement(error, _C("D:number-of-matches-within-limits"))
    return response


class FastReports:
    def __init__(self, store: Store, rights, encoding: str) -> None:
        self.store = store
        self.rights = rights
        self.encoding = encoding

    def answer(self, raw: bytes, base_prefix: str, path: str, user: str, user_groups: set
               ) -> tuple[int, dict, bytes] | None:
        """The multistatus for a plain sync or multiget on a readable Rendez-vous calendar,
        or None to let Radicale answer."""
        owner = calendar_owner(path)
        if owner is None or not raw:
            return None
        if not Access(self.rights, user, user_groups, path).check("r"):
            return None
        try:
            root = DefusedET.fromstring(raw)
        except Exception:  # Radicale answers malformed XML itself
            return None
        prop = root.find(_C("D:prop"))
        if root.tag not in (SYNC, MULTIGET) or prop is None:
            return None
        props = [child.tag for child in prop]
        if not props or any(tag not in SERVED for tag in props) or any(
                child.tag not in (_C("D:prop"), _C("D:href"), _C("D:sync-token"),
                                  _C("D:sync-level"), LIMIT) for child in root):
            return None
        for child in prop:
            if len(child) or child.attrib:  # calendar-data with expand/limits, or a subset
                return None
        collection = f"/{owner}/{CALENDAR_NAME}/"
        multistatus = ET.Element(_C("D:multistatus"))
        if root.tag == SYNC:
            token_element = root.find(_C("D:sync-token"))
            token = (token_element.text or "").strip() if token_element is not None else ""
            limit = _limit(root)
            if limit == 0:
                return None  # not a limit we understand: Radicale ignores it
            try:
                delta = self.store.login_changes_since(owner, token, limit)
            except ValueError:
                return None  # Radicale answers 403 valid-sync-token
            if delta is None:
                return None
            current, changed, truncated = delta
            for stored in changed:
                href = xmlutils.make_href(base_prefix, collection + stored.href)
                multistatus.append(_missing(href) if stored.deleted
                                   else _found(href, stored, props))
            if truncated:
                multistatus.append(_truncated(xmlutils.make_href(base_prefix, collection)))
            multistatus.append(_element(_C("D:sync-token"), current))
        else:
            names: dict[str, str] = {}
            for element in root.findall(_C("D:href")):
                wanted = pathutils.sanitize_path(unquote(urlparse(element.text or "").path))
                if not (wanted + "/").startswith(base_prefix + "/"):
                    continue
                name = wanted[len(base_prefix):]
                if posixpath.dirname(name) + "/" != collection:
                    return None  # outside this calendar: Radicale knows what to say
                names[posixpath.basename(name)] = name
            rows = self.store.login_calendar_objects(owner, list(names))
            if rows is None:
                return None
            found = {o.href: o for o in rows}
            for name, full in names.items():
                href = xmlutils.make_href(base_prefix, full)
                stored = found.get(name)
                multistatus.append(_found(href, stored, props) if stored else _missing(href))
        body = io.BytesIO()
        ET.ElementTree(multistatus).write(body, encoding=self.encoding, xml_declaration=True)
        headers = {"Content-Type": f"text/xml; charset={self.encoding}"}
        return client.MULTI_STATUS, headers, body.getvalue()
