"""What one VEVENT means to Gestan, independent of iCalendar text."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime


class InvalidObject(ValueError):
    """A calendar object we refuse, with the HTTP status and the reason shown to the client."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class EventData:
    """One appointment (or one occurrence of a series) as the ``actions`` columns hold it.

    ``start``/``end`` are naive UTC. ``tzid`` is an IANA name, ``"UTC"``, or ``None`` for a
    floating time; all-day events keep the zone their dates were read in. ``extra_ics`` is a
    VEVENT holding every property the columns cannot (VALARM, ATTENDEE, X-..., and for a
    series master its RRULE/RDATE/EXDATE), returned unchanged.
    """

    start: datetime
    end: datetime
    tzid: str | None = None
    all_day: bool = False
    subject: str = ""
    notes: str = ""
    location: str = ""
    contact: str = ""
    status: str = "CONFIRMED"
    extra_ics: str = ""
    recurrence_id: str | None = None

    def content(self) -> tuple:
        """Everything but the recurrence id: equal content means no override is needed."""
        return (self.start, self.end, self.tzid, self.all_day, self.subject, self.notes,
                self.location, self.contact, self.status, self.extra_ics)

    def with_changes(self, **changes) -> EventData:
        return replace(self, **changes)


@dataclass(frozen=True)
class Repair:
    """One change made to what a client sent so that it can be stored (bridge.ical.repair):
    ``kind`` names the rule (it is what is counted), ``detail`` says what was changed."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass
class ParsedObject:
    """A validated calendar object: one single event, or a series master with its overrides."""

    uid: str
    master: EventData
    overrides: list[EventData] = field(default_factory=list)
    # Series only: the VCALENDAR (master + overrides) normalised, kept as the series source.
    series_ics: str | None = None
    # What was repaired in the text received (logged and counted by the caller, who knows
    # the object's href), and the repaired VCALENDAR (None when nothing was): what is
    # stored, and served back, is the repaired object.
    repairs: list[Repair] = field(default_factory=list)
    repaired_ics: str | None = None

    @property
    def is_series(self) -> bool:
        return self.series_ics is not None
