"""A series changed "this and following" (RANGE=THISANDFUTURE), cut as the remotes hold it.

Google and Outlook have no RECURRENCE-ID;RANGE=THISANDFUTURE: editing "this and following
events" there ends the series just before the split point (an UNTIL) and starts a new series
there with the changed fields. A series whose text carries such overrides is written to them
the same way: one *part* per range, each a plain series (its own UID, its RRULE ended before
the next part), the occurrence overrides and deletions of a range going with its part.
Each part's occurrences are exactly those recurring-ical-events expands from the whole text
in that range (tests/test_future.py): the later occurrences moved by the override's shift
(DTSTART minus RECURRENCE-ID), lasting as long as it, with its fields.

The first part keeps the series' UID and key ``""``; a later part is keyed on the
recurrence-id key of the occurrence it starts at, its UID ``<UID>_R<key>`` (Google names the
series it splits off ``<id>_R<start>`` too). A series cut this way somewhere else (``at``:
the parts the sync already holds remotely) is cut there as well, without changing anything
from there on. What cannot be cut exactly raises :class:`CannotCut` with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from dateutil import rrule
from icalendar import Calendar, Component, vRecur

from bridge.ical import fast_series
from bridge.ical.timezones import rid_key, rid_value, zone

FUTURE = "THISANDFUTURE"
_PART_UID = re.compile(r"^(?P<uid>.+)_R(?P<key>\d{8}(?:T\d{6}Z)?)$")
_RULE_END = ("COUNT", "UNTIL")
_RECURRENCE = ("RRULE", "RDATE", "EXDATE", "EXRULE")
_CHECKED = 100   # occurrences of a shifted rule compared with the ones it replaces
_DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]


class CannotCut(ValueError):
    """The series cannot be written as plain series exactly; the message says why."""


@dataclass(frozen=True)
class SeriesPart:
    key: str   # "" the first part, else the recurrence-id key of the occurrence it starts at
    uid: str
    ics: str


def part_uid(uid: str, key: str) -> str:
    return f"{uid}_R{key}" if key else uid


def part_of(uid: str) -> tuple[str, str] | None:
    """(series UID, part key) of a later part's UID, None for any other UID."""
    found = _PART_UID.match(uid)
    return (found["uid"], found["key"]) if found else None


_FUTURE_LINE = re.compile(r"^RECURRENCE-ID;[^:\r\n]*RANGE=THISANDFUTURE", re.I | re.M)


def has_future(ics: str | None) -> bool:
    """Whether a text holds a THISANDFUTURE override (a text search: cheap)."""
    return bool(ics) and _FUTURE_LINE.search(ics) is not None


def refuse_future(series_ics: str | None) -> str | None:
    """Why a remote's mapping must not write this series as it is (None: it may): the
    sync engine hands targets its parts (:func:`cut_series`), never the whole, since a
    THISANDFUTURE override written as an exception would change one occurrence only."""
    if has_future(series_ics):
        return ("a change of \"this and following\" occurrences (RANGE=THISANDFUTURE) is "
                "written as separate series: cut it first (bridge.ical.future)")
    return None


def future_keys(ics: str, default_tz: str) -> list[str]:
    """The recurrence-id keys of the THISANDFUTURE overrides of a text, sorted."""
    if not has_future(ics):
        return []
    return sorted(rid_key(c.decoded("RECURRENCE-ID"), default_tz)
                  for c in Calendar.from_ical(ics).walk("VEVENT") if is_future(c))


def is_future(component: Component) -> bool:
    rid = component.get("RECURRENCE-ID")
    return rid is not None and str(rid.params.get("RANGE", "")).upper() == FUTURE


def with_uid(ics: str, uid: str) -> str:
    """The object under another UID (a part taken apart into an object of its own)."""
    calendar = Calendar.from_ical(ics)
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    if all(str(c.get("UID", "")) == uid for c in events):
        return ics
    for component in events:
        component.pop("UID", None)
        component.add("UID", uid)
    return calendar.to_ical().decode("utf-8")


# ---------------------------------------------------------------- values of one form

class _Form:
    """The kind of the master's DTSTART (date, floating, or in a zone): every value of
    the cut is read in it, so that shifts are wall-clock shifts as recurring-ical-events
    makes them."""

    def __init__(self, start: date, default_tz: str) -> None:
        self.is_date = not isinstance(start, datetime)
        self.tz = None if self.is_date else start.tzinfo
        self.default_tz = default_tz
        self.start_time = time() if self.is_date else start.time()

    def of(self, value: date) -> date:
        if self.is_date:
            return value.date() if isinstance(value, datetime) else value
        if not isinstance(value, datetime):
            value = datetime.combine(value, self.start_time)
        if self.tz is None:
            if value.tzinfo is not None:
                value = value.astimezone(zone(self.default_tz)).replace(tzinfo=None)
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=self.tz)
        return value.astimezone(self.tz)

    def of_key(self, key: str) -> date:
        return self.of(rid_value(key, None if self.tz is None else "UTC", self.default_tz))

    def naive(self, value: date) -> datetime:
        """What dateutil is given: a date as its midnight."""
        return datetime.combine(value, time()) if self.is_date else value

    def back(self, value: datetime) -> date:
        return value.date() if self.is_date else value

    def until(self, last: date, following: date | None) -> date:
        """An UNTIL that keeps ``last`` and stops before ``following``: the end of the
        last occurrence's day where possible (Outlook ends a series on a day: the same
        value reads back from every remote), else the occurrence itself."""
        if self.is_date:
            return last
        end_of_day = datetime.combine(last.date(), time(23, 59, 59), last.tzinfo)
        value = end_of_day if following is None or end_of_day < following else last
        return value.astimezone(UTC) if value.tzinfo is not None else value


def _values(component: Component, name: str) -> list:
    values = fast_series.date_values(component, name)
    if any(isinstance(value, tuple) for value in values):
        raise CannotCut(f"{name} with a period cannot be cut")
    return values


def _times(component: Component) -> tuple[date, date | None]:
    start = component.decoded("DTSTART")
    end = component.decoded("DTEND") if "DTEND" in component else None
    return start, end


# ---------------------------------------------------------------- the rule

def _rule_text(rule: vRecur, drop_end: bool) -> str:
    parts = [p for p in rule.to_ical().decode("ascii").split(";")
             if not (drop_end and p.split("=", 1)[0].upper() in _RULE_END)]
    return ";".join(parts)


def _generator(text: str, start: datetime, form: _Form) -> rrule.rrule:
    if form.is_date:  # dateutil wants the DATE UNTIL of an all-day series as a midnight
        text = re.sub(r"UNTIL=(\d{8})(?=;|$)", r"UNTIL=\1T000000", text)
    try:
        return rrule.rrulestr(text, dtstart=start)
    except (ValueError, TypeError) as exc:
        raise CannotCut(f"the rule {text} cannot be read: {exc}") from None


def _shifted_rule(rule: vRecur, shift: timedelta, first: datetime, form: _Form) -> vRecur:
    """The rule (end left out) that makes the occurrences from ``first`` on, each moved by
    ``shift``, starting at ``first + shift``. Checked, not assumed."""
    moved = vRecur(rule)
    for name in _RULE_END:
        moved.pop(name, None)
    if not shift:
        return moved
    days = (first + shift).date() - first.date()
    timed = [p for p in ("BYHOUR", "BYMINUTE", "BYSECOND") if moved.get(p)]
    if timed:
        raise CannotCut(f"a change of time of a series repeating {', '.join(timed)} "
                        "cannot be cut")
    if days:
        fixed = [p for p in ("BYMONTHDAY", "BYYEARDAY", "BYWEEKNO", "BYSETPOS", "BYMONTH")
                 if moved.get(p)]
        byday = [str(d).upper() for d in moved.get("BYDAY") or []]
        if fixed or any(len(d) != 2 for d in byday):
            raise CannotCut("a move to another day of a series repeating on chosen days "
                            "of the month or year cannot be cut")
        if byday:
            moved["BYDAY"] = [_DAYS[(_DAYS.index(d) + days.days) % 7] for d in byday]
    return moved


# ---------------------------------------------------------------- the cut

@dataclass
class _Segment:
    key: str            # the part's key ("" the first)
    start: date         # where it starts (original occurrences, before its shift)
    base: Component     # what its occurrences are copies of (the master or the override)
    shift: timedelta    # how far its occurrences move (the override's move)
    dropped: bool = False  # "this and following" cancelled: no part
    first: datetime | None = None   # its first occurrence (before its shift)


def cut_series(ics: str, default_tz: str, at: Iterable[str] = ()) -> list[SeriesPart]:
    """The object as plain series, one per THISANDFUTURE range (and per key of ``at``);
    the object as it is, one part, when there is nothing to cut."""
    calendar = Calendar.from_ical(ics)
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    masters = [c for c in events if "RECURRENCE-ID" not in c]
    futures = [c for c in events if is_future(c)]
    wanted = sorted(k for k in set(at) if k)
    uid = str(events[0]["UID"]) if events else ""
    if not futures and (not wanted or len(masters) != 1 or "RRULE" not in masters[0]):
        return [SeriesPart("", uid, ics)]
    if len(masters) != 1:
        raise CannotCut("a THISANDFUTURE override without its series")
    master = masters[0]
    rule = master.get("RRULE")
    if isinstance(rule, list) or master.get("EXRULE") is not None:
        raise CannotCut("only a series with one RRULE can be cut (THISANDFUTURE)")
    if rule is None:
        raise CannotCut("a THISANDFUTURE override of a series without RRULE")
    start, _ = _times(master)
    form = _Form(start, default_tz)
    generator = _generator(_rule_text(rule, drop_end=False), form.naive(start), form)

    segments = {"": _Segment("", form.of(start), master, timedelta(0),
                             first=form.naive(start))}
    for override in futures:
        written = override.decoded("RECURRENCE-ID")
        original, key = form.of(written), rid_key(written, default_tz)
        begin, _ = _times(override)
        if isinstance(begin, datetime) == form.is_date:
            raise CannotCut("a THISANDFUTURE override of another kind (date or time) "
                            "than its series")
        if generator.after(form.naive(original), inc=True) != form.naive(original):
            raise CannotCut(f"the THISANDFUTURE override {key} names no occurrence")
        cancelled = str(override.get("STATUS", "")).upper() == "CANCELLED"
        segments[key] = _Segment(key, original, override, form.of(begin) - original,
                                 dropped=cancelled, first=form.naive(original))
    for key in wanted:
        if key not in segments:
            begins = form.of_key(key)
            segments[key] = _Segment(key, begins, master, timedelta(0),
                                     first=generator.after(form.naive(begins), inc=True))
    ordered = sorted(segments.values(), key=lambda s: (form.naive(s.start), s.key != ""))
    overrides = [c for c in events if "RECURRENCE-ID" in c and not is_future(c)]
    for component in overrides:
        if component["RECURRENCE-ID"].params.get("RANGE"):
            raise CannotCut(f"RANGE={component['RECURRENCE-ID'].params['RANGE']} is not "
                            "understood")
    exdates = [form.of(v) for v in _values(master, "EXDATE")]
    rdates = [form.of(v) for v in _values(master, "RDATE")]

    kept: list[tuple[_Segment, date | None, list, list, list]] = []
    for index, segment in enumerate(ordered):
        following = ordered[index + 1].start if index + 1 < len(ordered) else None
        upper = None if following is None else form.naive(following)
        lower = None if segment.key == "" else form.naive(segment.start)

        def inside(value: date, lower=lower, upper=upper) -> bool:
            naive = form.naive(value)
            return (lower is None or naive >= lower) and (upper is None or naive < upper)

        own_rdates = [v for v in rdates if inside(v)]
        if segment.first is None or (upper is not None and segment.first >= upper):
            if own_rdates:
                raise CannotCut("a range holding only extra dates (RDATE) cannot be cut")
            continue  # no occurrence in this range: no part
        if segment.dropped:
            continue  # "this and following" deleted: the series ends before it
        kept.append((segment, following, [v for v in exdates if inside(v)], own_rdates,
                     [c for c in overrides if inside(form.of(c.decoded("RECURRENCE-ID")))]))
    if not kept:
        raise CannotCut("no occurrence left once cut")
    kept[0][0].key = ""  # whatever comes first is the series itself, under its UID
    return [_part(calendar, master, *found, form, generator, uid, rule) for found in kept]


def _part(calendar: Calendar, master: Component, segment: _Segment, following: date | None,
          exdates: list[date], rdates: list[date], overrides: list[Component], form: _Form,
          generator: rrule.rrule, uid: str, rule: vRecur) -> SeriesPart:
    """One range of the series as a plain series."""
    shift, first = segment.shift, segment.first
    assert first is not None
    own_uid = part_uid(uid, segment.key)
    head = Component.from_ical(segment.base.to_ical())
    for name in ("RECURRENCE-ID", "UID", *_RECURRENCE):
        head.pop(name, None)
    head.add("UID", own_uid)
    begin, end = _times(segment.base)
    if form.naive(form.of(begin)) != first + shift or getattr(begin, "tzinfo", None) \
            is not form.tz:
        # the shift as recurring-ical-events makes it, written in the series' own form
        head.pop("DTSTART")
        head.add("DTSTART", form.back(first + shift))
        if end is not None:
            head.pop("DTEND")
            head.add("DTEND", form.back(first + shift) + (end - begin))
    moved = _shifted_rule(rule, shift, first, form)
    _check(generator, moved, first, shift, following, form)
    if following is not None:
        last = generator.before(form.naive(following)) or first
        moved["UNTIL"] = form.until(form.back(max(last, first) + shift),
                                    form.back(form.naive(following) + shift))
    elif rule.get("COUNT"):
        earlier = generator.between(form.naive(_times(master)[0]) - timedelta(seconds=1),
                                    first, inc=False)
        moved["COUNT"] = int(_one(rule["COUNT"])) - len(earlier)
    elif rule.get("UNTIL"):
        until = form.naive(form.of(_one(rule["UNTIL"])))
        last = generator.before(until + timedelta(days=2)) or first
        moved["UNTIL"] = form.until(form.back(max(last, first) + shift), None)
    head.add("RRULE", moved)
    for value in sorted(exdates, key=form.naive):
        head.add("EXDATE", form.back(form.naive(value) + shift))
    for value in sorted(rdates, key=form.naive):
        head.add("RDATE", form.back(form.naive(value) + shift))
    out = Calendar()
    for name, value in calendar.items():
        out[name] = value
    for component in calendar.subcomponents:
        if component.name == "VTIMEZONE":
            out.add_component(component)
    out.add_component(head)
    for override in sorted(overrides, key=lambda c: form.naive(form.of(
            c.decoded("RECURRENCE-ID")))):
        copy = Component.from_ical(override.to_ical())
        original = form.naive(form.of(copy.decoded("RECURRENCE-ID")))
        for name in ("RECURRENCE-ID", "UID"):
            copy.pop(name)
        copy.add("UID", own_uid)
        copy.add("RECURRENCE-ID", form.back(original + shift))
        out.add_component(copy)
    return SeriesPart(segment.key, own_uid, out.to_ical().decode("utf-8"))


def _one(value):
    return value[0] if isinstance(value, list) else value


def _check(generator: rrule.rrule, moved: vRecur, first: datetime, shift: timedelta,
           following: date | None, form: _Form) -> None:
    """The shifted rule makes the range's occurrences, moved: compared over the first
    ``_CHECKED`` of them."""
    expected = []
    for value in generator.xafter(first, count=_CHECKED, inc=True):
        if following is not None and value >= form.naive(following):
            break
        expected.append(value + shift)
    made = _generator(_rule_text(moved, drop_end=True), first + shift, form)
    got = list(made.xafter(first + shift, count=len(expected), inc=True))
    if got != expected:
        raise CannotCut("the later occurrences cannot be written as one rule once moved")
