"""Action ↔ VEVENT mapping with the ``icalendar`` package (parse, render, series expansion)."""

from bridge.ical.model import EventData, InvalidObject, ParsedObject
from bridge.ical.parse import event_from_component, parse_object
from bridge.ical.render import etag_of, render_object

__all__ = ["EventData", "InvalidObject", "ParsedObject", "etag_of", "event_from_component",
           "parse_object", "render_object"]
