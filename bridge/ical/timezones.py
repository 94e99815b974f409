"""Time zones and instants: IANA zones, UTC storage, VTIMEZONE blocks, recurrence-id keys."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from icalendar import Timezone


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` when the name is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, IsADirectoryError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def is_iana(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


@functools.cache
def iana_names() -> frozenset[str]:
    return frozenset(available_timezones())


def iana_name(tz: tzinfo | None) -> str | None:
    """The IANA name of an aware value's zone, ``"UTC"``, or None when it has none."""
    if tz is None:
        return None
    if tz is UTC or getattr(tz, "key", None) in ("UTC", "Etc/UTC"):
        return "UTC"
    key = getattr(tz, "key", None)
    if key and is_iana(key):
        return key
    return None


def to_utc(value: datetime) -> datetime:
    """Naive UTC for an aware datetime (the storage form)."""
    return value.astimezone(UTC).replace(tzinfo=None)


def local_to_utc(value: datetime, tzid: str) -> datetime:
    return to_utc(value.replace(tzinfo=zone(tzid)))


def utc_to_local(value: datetime, tzid: str) -> datetime:
    """Aware local time in ``tzid`` for a naive UTC instant."""
    return value.replace(tzinfo=UTC).astimezone(zone(tzid))


def date_to_utc(day: date, tzid: str) -> datetime:
    """The instant a day starts in ``tzid`` (all-day events are stored this way)."""
    return local_to_utc(datetime.combine(day, time()), tzid)


def utc_to_date(value: datetime, tzid: str) -> date:
    return utc_to_local(value, tzid).date()


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def rid_key(value: date | datetime, default_tz: str) -> str:
    """A recurrence id as a stable key: UTC ``YYYYMMDDTHHMMSSZ``, or ``YYYYMMDD`` for a date.

    Phones, Google and Outlook name the same occurrence with different zones; keying on the
    UTC instant makes them agree.
    """
    if not isinstance(value, datetime):
        return value.strftime("%Y%m%d")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(default_tz))
    return to_utc(value).strftime("%Y%m%dT%H%M%SZ")


def rid_value(key: str, tzid: str | None, default_tz: str) -> date | datetime:
    """The RECURRENCE-ID value for ``key``, expressed like the series master's DTSTART."""
    if len(key) == 8:
        return datetime.strptime(key, "%Y%m%d").date()
    instant = datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if tzid == "UTC":
        return instant
    if tzid is None:
        return instant.astimezone(zone(default_tz)).replace(tzinfo=None)
    return instant.astimezone(zone(tzid))


def rid_instant(key: str, default_tz: str) -> datetime:
    """Naive UTC instant of a recurrence-id key (a date key starts at midnight there)."""
    if len(key) == 8:
        return date_to_utc(datetime.strptime(key, "%Y%m%d").date(), default_tz)
    return datetime.strptime(key, "%Y%m%dT%H%M%SZ")


@functools.lru_cache(maxsize=512)
def vtimezone(tzid: str, first_year: int, last_year: int) -> Timezone:
    """A VTIMEZONE for ``tzid`` covering the given years (deterministic for the same input)."""
    return Timezone.from_tzid(tzid, first_date=date(first_year, 1, 1),
                              last_date=date(last_year + 1, 1, 1))


ONE_DAY = timedelta(days=1)
