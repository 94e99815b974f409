"""``gestan-bridge agenda list|add|delete|import``: a user's Gestan agenda.

Times are the user's wall-clock times (their time zone setting): listed in it whatever
zone a phone wrote, and typed in it unless ``--timezone`` names another.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bridge.action_types import ActionType
from bridge.cli.common import DbOption, UserOption, fail, open_db
from bridge.ical.timezones import ONE_DAY, date_to_utc, now_utc, to_utc, utc_to_local, zone

if TYPE_CHECKING:
    from bridge.ical.model import EventData
    from bridge.store.records import Action

agenda_app = typer.Typer(no_args_is_help=True, help="A user's Gestan agenda.")

# Exit status of ``agenda import`` when some objects were imported and others rejected.
PARTLY_IMPORTED = 3


# ------------------------------------------------------------------ reading what people type
def parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"invalid date {value!r}: use YYYY-MM-DD")


def parse_local(value: str) -> datetime:
    for pattern in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
                    "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, pattern)
        except ValueError:
            continue
    fail(f"invalid date-time {value!r}: use 'YYYY-MM-DD HH:MM'")


def wall_to_utc(local: datetime, tz: str) -> datetime:
    """The naive UTC instant of a wall-clock time in ``tz``.

    A time the clocks skip (spring forward) is refused with the gap: read as RFC 5545 says it
    would move by the gap's length, and an end typed beside it would not, so an appointment
    would silently shrink or vanish. A time that happens twice (autumn) is the first one.
    """
    place = zone(tz)
    instant = to_utc(local.replace(tzinfo=place))
    if _local(instant, tz) == local:
        return instant
    jump_from, jump_to = _skipped(local, tz)
    fail(f"{local:%Y-%m-%d %H:%M} does not exist in {tz}: the clocks go from "
         f"{jump_from:%H:%M} to {jump_to:%H:%M} that night; give a time outside that gap")


def _local(instant: datetime, tz: str) -> datetime:
    return utc_to_local(instant, tz).replace(tzinfo=None)


def _skipped(local: datetime, tz: str) -> tuple[datetime, datetime]:
    """The wall-clock times a spring-forward change jumps between, around ``local``: the
    change's instant is found by bisection between the two readings of ``local``."""
    place = zone(tz)
    early = to_utc(local.replace(tzinfo=place, fold=1))  # read with the offset after
    late = to_utc(local.replace(tzinfo=place, fold=0))   # read with the offset before
    offset_before = utc_to_local(early, tz).utcoffset()
    while late - early > timedelta(seconds=1):
        middle = early + (late - early) / 2
        if utc_to_local(middle, tz).utcoffset() == offset_before:
            early = middle
        else:
            late = middle
    change = late.replace(microsecond=0)
    return (change + offset_before).replace(tzinfo=None), _local(change, tz)


# ------------------------------------------------------------------ list
@agenda_app.command("list")
def agenda_list(
    user: UserOption,
    start: Annotated[str | None, typer.Option(
        "--from", help="First day (YYYY-MM-DD) in the user's time zone, default today.")
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=3660, help="How many days.")] = 366,
    all_types: Annotated[bool, typer.Option(
        "--all-types", help="Also Appel, Tâche... (not synchronised).")] = False,
    db: DbOption = None,
) -> None:
    """One line per Rendez-vous: id, date and time at the user's wall-clock time (and at
    the event's own, named, when it has another zone), subject, location. What spans days
    shows its last day ("2027-07-01 to 2027-07-03 all day")."""
    first = parse_day(start) if start else None
    store = open_db(db)
    account = store.require_user(user)
    tz = account.timezone
    first = first or _local(now_utc(), tz).date()
    last = first + timedelta(days=days)
    begin, end = date_to_utc(first, tz), date_to_utc(last, tz)
    types = None if all_types else [ActionType.APPOINTMENT]
    # an all-day appointment counts in the zone its dates were given in: ask wider, pick here
    for action in store.agenda(user, begin - 2 * ONE_DAY, end + 2 * ONE_DAY, types):
        if _within(action.event, tz, first, last, begin, end):
            typer.echo(line(action, tz, all_types))


def _within(event: EventData, tz: str, first: date, last: date, begin: datetime,
            end: datetime) -> bool:
    if event.all_day:
        day_one, after = _days(event, tz)
        return day_one < last and after > first
    return event.start < end and max(event.end, event.start + timedelta(seconds=1)) > begin


def _days(event: EventData, tz: str) -> tuple[date, date]:
    """An all-day event's first day and the day after its last, in the zone its dates were
    read in (they are dates, not instants)."""
    own = event.tzid or tz
    day_one = _local(event.start, own).date()
    return day_one, max(_local(event.end, own).date(), day_one + ONE_DAY)


def when(event: EventData, tz: str) -> str:
    """The event's dates and times as the user ``tz`` reads them."""
    if event.all_day:
        day_one, after = _days(event, tz)
        last = after - ONE_DAY
        return f"{day_one} all day" if last == day_one else f"{day_one} to {last} all day"
    text = _span(_local(event.start, tz), _local(event.end, tz))
    if event.tzid not in (None, "UTC", tz):
        own_start, own_end = _local(event.start, event.tzid), _local(event.end, event.tzid)
        own = _span(own_start, own_end)
        if own_start.date() == _local(event.start, tz).date():
            own = own[len("YYYY-MM-DD "):]
        text += f" ({own} {event.tzid})"
    return text


def _span(start: datetime, end: datetime) -> str:
    if end.date() == start.date() or end == datetime.combine(start.date() + ONE_DAY,
                                                             datetime.min.time()):
        finish = "24:00" if end.date() != start.date() else f"{end:%H:%M}"
        return f"{start:%Y-%m-%d %H:%M}-{finish}"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"


def line(action: Action, tz: str, with_type: bool = False) -> str:
    event = action.event
    parts = [f"{action.id:>5}", when(event, tz)]
    if with_type:
        parts.append(f"[{action.type.value}]")
    parts.append(" ".join((event.subject or "(no subject)").split()))
    if event.location:
        parts.append(f"@ {' '.join(event.location.split())}")
    if action.recurrence_id:
        parts.append("(series)")
    return "  ".join(parts)


# ------------------------------------------------------------------ add
@agenda_app.command("add")
def agenda_add(
    user: UserOption,
    subject: Annotated[str, typer.Option(help="Title of the appointment.")],
    start: Annotated[str, typer.Option(
        help="'YYYY-MM-DD HH:MM' (wall-clock time in --timezone), or YYYY-MM-DD with "
        "--all-day. A time that a DST change skips (02:30 on the last Sunday of March in "
        "Paris) is refused; one that happens twice (autumn) is the first.")],
    end: Annotated[str | None, typer.Option(help="End, same form as --start.")] = None,
    duration: Annotated[int | None, typer.Option(
        min=0, help="Minutes (default 60), elapsed time even across a DST change.")] = None,
    all_day: Annotated[bool, typer.Option("--all-day")] = False,
    location: str = "", notes: str = "", contact: str = "",
    timezone: Annotated[str | None, typer.Option(help="IANA zone (default: the user's).")] = None,
    action_type: Annotated[ActionType, typer.Option("--type")] = ActionType.APPOINTMENT,
    db: DbOption = None,
) -> None:
    """Add an action (a Rendez-vous by default): phones see it at their next sync."""
    from bridge.ical.model import EventData

    if end is not None and duration is not None:
        fail("give --end or --duration, not both")
    store = open_db(db)
    account = store.require_user(user)
    tz = timezone or account.timezone
    try:
        zone(tz)
    except ValueError as exc:
        fail(str(exc))
    texts = dict(subject=subject, location=location, notes=notes, contact=contact)
    if all_day:
        if duration is not None:
            fail("an all-day appointment takes --end (its last day), not --duration")
        first = parse_day(start)
        last = parse_day(end) if end else first
        if last < first:
            fail("--end is before --start")
        event = EventData(start=date_to_utc(first, tz), end=date_to_utc(last + ONE_DAY, tz),
                          tzid=tz, all_day=True, **texts)
    else:
        begin = wall_to_utc(parse_local(start), tz)
        finish = (wall_to_utc(parse_local(end), tz) if end
                  else begin + timedelta(minutes=60 if duration is None else duration))
        if finish < begin:
            fail("--end is before --start")
        event = EventData(start=begin, end=finish, tzid=tz, **texts)
    action = store.add_action(user, event, action_type)
    typer.echo(f"added {action.type.value} {action.id}: "
               f"{line(action, account.timezone).strip()}")


# ------------------------------------------------------------------ delete
@agenda_app.command("delete")
def agenda_delete(user: UserOption, action_id: Annotated[int, typer.Argument(
        help="The action id shown by 'agenda list'.")], db: DbOption = None) -> None:
    """Delete an action; a series occurrence is removed from its series only."""
    action = open_db(db).delete_action(user, action_id)
    typer.echo(f"deleted {action.type.value} {action.id} ({action.event.subject})")


# ------------------------------------------------------------------ import
@agenda_app.command("import")
def agenda_import(user: UserOption, file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, readable=True)], db: DbOption = None) -> None:
    """Import an .ics file: adds and updates by UID, never deletes; an object the file
    holds unchanged is left as it is (phones download nothing again).

    Prints "N added, N updated, N unchanged, N rejected", and each rejected object's
    reason on stderr. Exit status: 0 all imported, 3 some rejected (the others imported),
    1 nothing could be imported (an empty or unreadable file, every object rejected)."""
    from bridge.ical.model import InvalidObject

    store = open_db(db)
    store.require_user(user)
    data = file.read_bytes()
    if not data.strip():
        fail(f"{file} is empty: nothing to import")
    try:
        report = store.import_calendar(user, data)
    except InvalidObject as exc:
        fail(f"{file} is not an iCalendar file: {exc.reason}")
    if not (report.added or report.updated or report.unchanged or report.rejected):
        fail(f"{file} holds no event: nothing to import")
    typer.echo(f"imported {file.name}: {len(report.added)} added, {len(report.updated)} "
               f"updated, {len(report.unchanged)} unchanged, {len(report.rejected)} rejected")
    for label, reason in report.rejected:
        typer.echo(f"gestan-bridge: error: {file.name}: rejected {' '.join(label.split())}: "
                   f"{' '.join(reason.split())}", err=True)
    if not (report.added or report.updated or report.unchanged):
        raise typer.Exit(1)
    if report.rejected:
        raise typer.Exit(PARTLY_IMPORTED)

