"""calendar-query and calendar-multiget with ``<C:expand>``, answered for every object.

Radicale 3.9 expands with vobject and a single failing object fails the whole REPORT: a
series with overrides whose parsed form a filter had read answered 400 ("does not have a
vevent without a recurrence_id"), a floating series 500; RDATEs were lost and single
events left out. Here each object is expanded by recurring-ical-events (the reading the
store uses) over the asked window, RFC 4791 section 9.6.5: one VEVENT per instance with
its RECURRENCE-ID, date-times in UTC, no RRULE/RDATE/EXDATE, no VTIMEZONE. An object that
still cannot be expanded is served as stored, and logged: it never fails the others.

Which objects answer is decided as for any calendar-query (:mod:`plugins.queries`), the
expanded window counting as a time range: an object without an instance there has
nothing to show.
"""

from __future__ import annotations

import io
import logging
import posixpath
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from http import client
from urllib.parse import unquote, urlparse

import recurring_ical_events
from defusedxml import ElementTree as DefusedET
from icalendar import Calendar
from radicale import pathutils, xmlutils
from radicale.app.base import Access
from radicale.app.report import xml_item_response

from bridge.ical.timezones import zone
from plugins import queries
from plugins.common import calendar_owner
from plugins.storage import RendezVousCalendar, StoredItem

logger = logging.getLogger("gestan_bridge")

_C = xmlutils.make_clark
QUERY, MULTIGET = _C("C:calendar-query"), _C("C:calendar-multiget")
EXPAND, CALENDAR_DATA = _C("C:expand"), _C("C:calendar-data")
GETETAG, CONTENT_TYPE = _C("D:getetag"), _C("D:getcontenttype")
_STAMP = "%Y%m%dT%H%M%SZ"
_RECURRENCE = ("RRULE", "RDATE", "EXDATE", "EXRULE")
_INSTANTS = ("DTSTART", "DTEND", "RECURRENCE-ID")


class TooManyInstances(ValueError):
    pass


class ExpandReports:
    def __init__(self, storage, rights, encoding: str, max_instances: int) -> None:
        self.storage = storage
        self.rights = rights
        self.encoding = encoding
        self.max_instances = max_instances

    def answer(self, raw: bytes, base_prefix: str, path: str, user: str, user_groups: set
               ) -> tuple[int, dict, bytes] | None:
        """The multistatus of an expanding query or multiget on a readable Rendez-vous
        calendar, or None to let Radicale answer (other requests, malformed ones)."""
        if b"expand" not in raw:
            return None
        if calendar_owner(path) is None:
            return None
        try:
            root = DefusedET.fromstring(raw)
        except Exception:  # Radicale answers malformed XML itself
            return None
        expand = root.find(".//" + EXPAND)
        prop = root.find(_C("D:prop"))
        if root.tag not in (QUERY, MULTIGET) or expand is None or prop is None:
            return None
        try:
            window = queries.TimeRange(*(datetime.strptime(expand.get(k) or "", _STAMP)
                                         for k in ("start", "end")))
        except ValueError:
            return None  # Radicale answers 403 C:expand
        if not Access(self.rights, user, user_groups, path).check("r"):
            return None
        collection = next(iter(self.storage.discover(path)), None)
        if not isinstance(collection, RendezVousCalendar):
            return None
        multistatus = ET.Element(_C("D:multistatus"))
        if root.tag == QUERY:
            filters = root.findall(_C("C:filter"))
            plan = queries.plan(filters)
            if plan is None:  # a shape Radicale matches: whole objects, then the window
                wanted = window
                items = [item for item, matched in collection.get_filtered(filters)
                         if matched or collection.matches(item, filters)]
            else:
                wanted = _within(plan.time_range, window)
                items = [] if wanted is None else list(collection.query(
                    queries.Plan(wanted, plan.rest)))
        else:
            wanted = window
            items = self._multiget(root, base_prefix, collection, multistatus)
            if items is None:
                return None
        instances = 0
        for item in items:
            text, count = self._expanded(item, wanted, collection.user.timezone)
            if count == 0:
                continue
            instances += count
            if self.max_instances and instances > self.max_instances:
                raise TooManyInstances(f"more than {self.max_instances} instances to expand:"
                                       " ask for a shorter window")
            found, missing = [], []
            for tag in (child.tag for child in prop):
                element = ET.Element(tag)
                if tag == GETETAG:
                    element.text = item.etag
                elif tag == CALENDAR_DATA:
                    element.text = text
                elif tag == CONTENT_TYPE:
                    element.text = xmlutils.get_content_type(item, self.encoding)
                else:
                    missing.append(element)
                    continue
                found.append(element)
            href = pathutils.unstrip_path(posixpath.join(collection.path, item.href))
            multistatus.append(xml_item_response(base_prefix, href, found, missing))
        body = io.BytesIO()
        ET.ElementTree(multistatus).write(body, encoding=self.encoding, xml_declaration=True)
        headers = {"Content-Type": f"text/xml; charset={self.encoding}"}
        return client.MULTI_STATUS, headers, body.getvalue()

    @staticmethod
    def _multiget(root: ET.Element, base_prefix: str, collection: RendezVousCalendar,
                  multistatus: ET.Element) -> list[StoredItem] | None:
        """The asked objects of this calendar (404 responses for the missing), or None for
        an href elsewhere (Radicale knows what to say)."""
        names: dict[str, str] = {}
        prefix = f"/{collection.path}/"
        for element in root.findall(_C("D:href")):
            wanted = pathutils.sanitize_path(unquote(urlparse(element.text or "").path))
            if not (wanted + "/").startswith(base_prefix + "/"):
                continue
            name = wanted[len(base_prefix):]
            if posixpath.dirname(name) + "/" != prefix:
                return None
            names[posixpath.basename(name)] = name
        items = []
        for name, item in collection.get_multi(list(names)):
            if item is None:
                multistatus.append(xml_item_response(base_prefix, names[name],
                                                     found_item=False))
            else:
                items.append(item)
        return items

    @staticmethod
    def _expanded(item: StoredItem, wanted: queries.TimeRange, default_tz: str
                  ) -> tuple[str, int]:
        """The object's instances in ``wanted`` as one VCALENDAR, and how many; the stored
        text (one) if it cannot be expanded."""
        text = item.serialize()
        try:
            return expanded_text(text, wanted, default_tz)
        except Exception:
            logger.warning("could not expand %s/%s: served as stored", item.collection.path,
                           item.href, exc_info=True)
            return text, 1


def _within(time_range: queries.TimeRange | None, window: queries.TimeRange
            ) -> queries.TimeRange | None:
    """Where instances are both in the time range and the expanded window (None: nowhere)."""
    if time_range is None:
        return window
    start = max(time_range.start or window.start, window.start)
    end = min(time_range.end or window.end, window.end)
    return queries.TimeRange(start, end) if start < end else None


def expanded_text(text: str, wanted: queries.TimeRange, default_tz: str) -> tuple[str, int]:
    """RFC 4791 section 9.6.5: the instances of ``text`` overlapping ``wanted``, each one
    VEVENT with date-times in UTC (floating ones read in ``default_tz``)."""
    source = Calendar.from_ical(text)
    recurring = any(name in component for component in source.walk("VEVENT")
                    for name in ("RRULE", "RDATE"))
    query = recurring_ical_events.of(source)
    found = query.between(wanted.start.replace(tzinfo=UTC), wanted.end.replace(tzinfo=UTC))
    out = Calendar()
    for name in ("VERSION", "PRODID", "CALSCALE"):
        if name in source:
            out[name] = source[name]
    for component in sorted(found, key=lambda c: _sort_key(c, default_tz)):
        for name in _RECURRENCE:
            component.pop(name, None)
        if not recurring:
            component.pop("RECURRENCE-ID", None)
        for name in _INSTANTS:
            if name in component:
                value = component[name].dt
                del component[name]
                component.add(name, _utc(value, default_tz))
        out.add_component(component)
    return out.to_ical().decode("utf-8"), len(found)


def _utc(value: date | datetime, default_tz: str) -> date | datetime:
    if not isinstance(value, datetime):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(default_tz))
    return value.astimezone(UTC)


def _sort_key(component, default_tz: str) -> datetime:
    value = _utc(component["DTSTART"].dt, default_tz)
    if not isinstance(value, datetime):
        value = datetime.combine(value, datetime.min.time(), UTC)
    return value
