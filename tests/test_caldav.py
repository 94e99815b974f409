"""A phone's view: the real ``caldav`` client against a real server, checked against the store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import caldav
import requests
from icalendar import Calendar

from bridge.ical.model import EventData
from bridge.ical.timezones import local_to_utc
from bridge.server import MAX_REPORT, load_configuration
from bridge.store import ActionType
from tests.clirun import invoke
from tests.conftest import PASSWORDS


def phone(server, login: str = "alice") -> caldav.DAVClient:
    return caldav.DAVClient(url=server.url, username=login, password=PASSWORDS[login])


def rendez_vous(server, login: str = "alice") -> caldav.Calendar:
    calendars = phone(server, login).principal().calendars()
    assert len(calendars) == 1
    return calendars[0]


def soon(days: int, hour: int = 10) -> datetime:
    day = date.today() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, 0)


def vevent(uid: str, start: str, end: str, summary: str, extra: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//phone//EN\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{start}\r\n{end}\r\n"
        f"SUMMARY:{summary}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n")


def paris(value: datetime) -> str:
    return value.strftime("TZID=Europe/Paris:%Y%m%dT%H%M%S")


def subjects(server, login: str = "alice") -> list[str]:
    return [a.event.subject for a in server.store.agenda(login)]


def test_discovery_from_well_known(server):
    answer = requests.request("PROPFIND", server.url + ".well-known/caldav",
                              auth=("alice", "alice"), allow_redirects=False)
    assert answer.status_code in (301, 302, 307, 308)
    client = caldav.DAVClient(url=server.url + ".well-known/caldav", username="alice",
                              password="alice")
    principal = client.principal()
    assert principal.url.path == "/alice/"
    assert str(principal.calendar_home_set.url).endswith("/alice/")
    calendar = principal.calendars()[0]
    assert calendar.url.path == "/alice/rendez-vous/"
    assert calendar.get_display_name() == "Rendez-vous"
    assert calendar.get_supported_components() == ["VEVENT"]


def test_only_rendez_vous_are_served(server):
    store = server.store
    start = local_to_utc(soon(3), "Europe/Paris")
    store.add_action("alice", EventData(start, start + timedelta(hours=1), "Europe/Paris",
                                        subject="Client visit"))
    store.add_action("alice", EventData(start, start + timedelta(minutes=10), "Europe/Paris",
                                        subject="Call the bank"), ActionType.CALL)
    store.add_action("alice", EventData(start, start + timedelta(minutes=10), "Europe/Paris",
                                        subject="Send invoice"), ActionType.TASK)
    events = rendez_vous(server).events()
    assert [e.icalendar_component["SUMMARY"] for e in events] == ["Client visit"]


def test_phone_create_move_delete_lands_in_gestan(server):
    calendar = rendez_vous(server)
    start, end = soon(2, 9), soon(2, 10)
    event = calendar.save_event(vevent("phone-1", f"DTSTART;{paris(start)}",
                                       f"DTEND;{paris(end)}", "Dentiste"))
    [action] = server.store.agenda("alice")
    assert action.event.subject == "Dentiste"
    assert action.event.tzid == "Europe/Paris"
    assert action.event.start == local_to_utc(start, "Europe/Paris")

    moved = soon(3, 15)
    event.icalendar_component["DTSTART"].dt = moved.replace(
        tzinfo=event.icalendar_component["DTSTART"].dt.tzinfo)
    event.icalendar_component["DTEND"].dt = (moved + timedelta(hours=1)).replace(
        tzinfo=event.icalendar_component["DTEND"].dt.tzinfo)
    event.save()
    [after] = server.store.agenda("alice")
    assert after.id == action.id, "Gestan keeps its action id when a phone moves it"
    assert after.event.start == local_to_utc(moved, "Europe/Paris")

    event.delete()
    assert server.store.agenda("alice") == []


def test_cli_changes_reach_the_phone_at_next_sync(server):
    """``gestan-bridge agenda add`` and ``agenda delete`` (in this process): the phone's next
    sync-collection holds exactly that object, then its deletion."""
    calendar = rendez_vous(server)
    token_before = calendar.objects_by_sync_token(load_objects=False).sync_token
    ctag_before = _ctag(server)
    env = {"GESTAN_BRIDGE_DB": server.store.url}
    added = invoke(env, "agenda", "add", "--user", "alice", "--subject", "Added in Gestan",
                   "--start", f"{soon(5):%Y-%m-%d %H:%M}")
    assert added.returncode == 0, added.stderr
    changes = calendar.objects_by_sync_token(sync_token=token_before, load_objects=True)
    assert [o.icalendar_component["SUMMARY"] for o in changes] == ["Added in Gestan"]
    assert changes.sync_token != token_before
    assert _ctag(server) != ctag_before
    [obj] = list(changes)
    assert obj.icalendar_component["DTSTART"].dt.replace(tzinfo=None) == soon(5)

    [action] = server.store.agenda("alice")
    deleted = invoke(env, "agenda", "delete", "--user", "alice", str(action.id))
    assert deleted.returncode == 0, deleted.stderr
    gone = calendar.objects_by_sync_token(sync_token=changes.sync_token, load_objects=False)
    assert [str(o.url) for o in gone] == [str(obj.url)]
    assert requests.get(obj.url, auth=("alice", "alice")).status_code == 404
    assert rendez_vous(server).events() == []


def _ctag(server) -> str:
    body = ('<?xml version="1.0"?><propfind xmlns="DAV:" xmlns:CS="http://calendarserver.org/ns/">'
            "<prop><CS:getctag/></prop></propfind>")
    answer = requests.request("PROPFIND", server.calendar_url("alice"), data=body,
                              headers={"Depth": "0"}, auth=("alice", "alice"))
    assert answer.status_code == 207
    return answer.text.split("getctag>")[1]


def test_unknown_sync_token_is_refused_as_radicale_expects(server):
    body = ('<?xml version="1.0"?><sync-collection xmlns="DAV:"><sync-token>'
            "http://gestan-bridge.invalid/ns/sync/999999</sync-token><sync-level>1</sync-level>"
            "<prop><getetag/></prop></sync-collection>")
    answer = requests.request("REPORT", server.calendar_url("alice"), data=body,
                              auth=("alice", "alice"))
    assert answer.status_code == 403
    assert "valid-sync-token" in answer.text


def test_phone_series_is_one_object_and_one_action_per_occurrence(server):
    calendar = rendez_vous(server)
    first = soon(7, 9)
    third, fifth = first + timedelta(weeks=2), first + timedelta(weeks=4)
    text = (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//phone//EN\r\n"
        "BEGIN:VEVENT\r\nUID:series-1\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;{paris(first)}\r\nDTEND;{paris(first + timedelta(hours=1))}\r\n"
        "SUMMARY:Team meeting\r\nRRULE:FREQ=WEEKLY;COUNT=8\r\n"
        f"EXDATE;{paris(fifth)}\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:series-1\r\nDTSTAMP:20260101T000000Z\r\n"
        f"RECURRENCE-ID;{paris(third)}\r\nDTSTART;{paris(third + timedelta(hours=5))}\r\n"
        f"DTEND;{paris(third + timedelta(hours=6))}\r\nSUMMARY:Team meeting (moved)\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n")
    calendar.save_event(text)
    actions = server.store.agenda("alice")
    assert len(actions) == 7  # 8 occurrences, one excluded
    assert {a.event.subject for a in actions} == {"Team meeting", "Team meeting (moved)"}
    assert len({a.recurrence_id for a in actions}) == 7

    # Gestan deletes the second occurrence: the phone sees an EXDATE, not a missing event.
    second = next(a for a in actions if a.event.start == local_to_utc(
        first + timedelta(weeks=1), "Europe/Paris"))
    server.store.delete_action("alice", second.id)
    [event] = rendez_vous(server).events()
    components = [c for c in Calendar.from_ical(event.data).walk("VEVENT")]
    master = next(c for c in components if "RECURRENCE-ID" not in c)
    assert str(master["RRULE"].to_ical().decode()) == "FREQ=WEEKLY;COUNT=8"
    exdates = master["EXDATE"] if isinstance(master["EXDATE"], list) else [master["EXDATE"]]
    excluded = {d.dt.replace(tzinfo=None) for prop in exdates for d in prop.dts}
    assert excluded == {fifth, first + timedelta(weeks=1)}
    [override] = [c for c in components if "RECURRENCE-ID" in c]
    assert override["RECURRENCE-ID"].dt.replace(tzinfo=None) == third
    assert str(override["SUMMARY"]) == "Team meeting (moved)"
    assert len(server.store.agenda("alice")) == 6


def test_new_version_of_a_series_keeps_unchanged_occurrence_ids(server):
    calendar = rendez_vous(server)
    first = soon(7, 9)

    def series(count: int, summary: str) -> str:
        return vevent("series-2", f"DTSTART;{paris(first)}",
                      f"DTEND;{paris(first + timedelta(hours=1))}", summary,
                      f"RRULE:FREQ=DAILY;COUNT={count}\r\n")

    event = calendar.save_event(series(5, "Daily"))
    before = {a.recurrence_id: a.id for a in server.store.agenda("alice")}
    event.data = series(3, "Daily")
    event.save()
    after = {a.recurrence_id: a.id for a in server.store.agenda("alice")}
    assert len(before) == 5 and len(after) == 3
    assert all(before[key] == value for key, value in after.items())


def test_time_kinds_round_trip(server):
    calendar = rendez_vous(server)
    day = date.today() + timedelta(days=4)
    utc_start = datetime.combine(day, datetime.min.time()).replace(hour=13)
    cases = {
        "all-day": (f"DTSTART;VALUE=DATE:{day:%Y%m%d}",
                    f"DTEND;VALUE=DATE:{day + timedelta(days=2):%Y%m%d}"),
        "utc": (f"DTSTART:{utc_start:%Y%m%dT%H%M%S}Z",
                f"DTEND:{utc_start + timedelta(hours=1):%Y%m%dT%H%M%S}Z"),
        "montreal": (f"DTSTART;TZID=America/Montreal:{utc_start:%Y%m%dT%H%M%S}",
                     f"DTEND;TZID=America/Montreal:{utc_start:%Y%m%dT%H%M%S}"),
        "floating": (f"DTSTART:{utc_start:%Y%m%dT%H%M%S}",
                     f"DTEND:{utc_start + timedelta(minutes=30):%Y%m%dT%H%M%S}"),
    }
    for name, (start, end) in cases.items():
        calendar.save_event(vevent(name, start, end, name))
    served = {str(e.icalendar_component["UID"]): e.icalendar_component
              for e in calendar.events()}
    assert served["all-day"]["DTSTART"].dt == day
    assert served["all-day"]["DTEND"].dt == day + timedelta(days=2)
    assert served["utc"]["DTSTART"].dt == utc_start.replace(tzinfo=UTC)
    assert str(served["montreal"]["DTSTART"].params["TZID"]) == "America/Montreal"
    assert served["montreal"]["DTSTART"].dt.replace(tzinfo=None) == utc_start
    assert served["floating"]["DTSTART"].dt == utc_start  # naive, still floating
    by_subject = {a.event.subject: a.event for a in server.store.agenda("alice")}
    assert by_subject["all-day"].all_day
    assert by_subject["utc"].tzid == "UTC"
    assert by_subject["floating"].tzid is None
    assert by_subject["montreal"].start == local_to_utc(utc_start, "America/Montreal")


def test_unknown_properties_come_back_unchanged(server):
    calendar = rendez_vous(server)
    start = soon(6)
    extra = ("ATTENDEE;CN=Jean Dupont;PARTSTAT=ACCEPTED:mailto:jean@example.com\r\n"
             "X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC\r\n"
             "BEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Rappel\r\nTRIGGER:-PT30M\r\n"
             "END:VALARM\r\n")
    calendar.save_event(vevent("extras", f"DTSTART;{paris(start)}",
                               f"DTEND;{paris(start + timedelta(hours=1))}", "Avec extras",
                               extra))
    [event] = calendar.events()
    component = event.icalendar_component
    assert str(component["ATTENDEE"]) == "mailto:jean@example.com"
    assert component["ATTENDEE"].params["CN"] == "Jean Dupont"
    assert str(component["X-APPLE-TRAVEL-ADVISORY-BEHAVIOR"]) == "AUTOMATIC"
    [alarm] = component.walk("VALARM")
    assert alarm["TRIGGER"].dt == timedelta(minutes=-30)


def test_etag_is_deterministic_and_changes_with_content(server):
    calendar = rendez_vous(server)
    start = soon(8)
    body = vevent("etag-1", f"DTSTART;{paris(start)}",
                  f"DTEND;{paris(start + timedelta(hours=1))}", "Stable")
    url = calendar.url.join("etag-1.ics")
    auth = ("alice", "alice")
    created = requests.put(url, data=body, auth=auth,
                           headers={"Content-Type": "text/calendar"})
    assert created.status_code == 201
    first = requests.get(url, auth=auth)
    again = requests.get(url, auth=auth)
    assert first.content == again.content
    assert first.headers["ETag"] == again.headers["ETag"] == created.headers["ETag"]
    changed = requests.put(url, data=body.replace("Stable", "Changed"), auth=auth,
                           headers={"If-Match": first.headers["ETag"]})
    assert changed.status_code == 204
    assert changed.headers["ETag"] != first.headers["ETag"]


def test_time_range_query_uses_instances(server):
    calendar = rendez_vous(server)
    near, far = soon(3), soon(40)
    calendar.save_event(vevent("near", f"DTSTART;{paris(near)}",
                               f"DTEND;{paris(near + timedelta(hours=1))}", "near"))
    calendar.save_event(vevent("far", f"DTSTART;{paris(far)}",
                               f"DTEND;{paris(far + timedelta(hours=1))}", "far"))
    calendar.save_event(vevent("weekly", f"DTSTART;{paris(soon(-60))}",
                               f"DTEND;{paris(soon(-60) + timedelta(hours=1))}", "weekly",
                               "RRULE:FREQ=WEEKLY\r\n"))
    found = calendar.search(start=datetime.combine(date.today(), datetime.min.time()),
                            end=soon(10), event=True, expand=False)
    assert sorted(str(e.icalendar_component["UID"]) for e in found) == ["near", "weekly"]
    later = calendar.search(start=soon(37), end=soon(44), event=True, expand=False)
    assert sorted(str(e.icalendar_component["UID"]) for e in later) == ["far", "weekly"]


def test_full_sync_is_not_capped_at_radicale_10000_events(tmp_path):
    """Radicale refuses a REPORT of more than 10,000 VEVENTs by default: years of
    appointments would make a phone's first sync fail. Ours lifts it unless the file sets it."""
    default = load_configuration(None, f"sqlite:///{tmp_path / 'a.db'}")
    assert default.get("reporting", "max_expand_occurrence") == MAX_REPORT
    conf = tmp_path / "radicale.conf"
    conf.write_text("[reporting]\nmax_expand_occurrence = 500\n")
    chosen = load_configuration(conf, f"sqlite:///{tmp_path / 'a.db'}")
    assert chosen.get("reporting", "max_expand_occurrence") == 500
