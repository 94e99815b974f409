"""Demo users and appointments for ``gestan-bridge serve --demo`` (deterministic per day)."""

from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta

from bridge.ical.model import EventData
from bridge.ical.timezones import date_to_utc, local_to_utc
from bridge.store import ActionType, Store

TZ = "Europe/Paris"
DEMO_USERS = {"alice": "Alice Martin", "bob": "Bob Durand"}
APPOINTMENTS_PER_USER = 40
_SUBJECTS = ["Rendez-vous client", "Visite chantier", "Réunion d'équipe", "Devis à présenter",
             "Démonstration produit", "Point fournisseur", "Entretien annuel", "Livraison"]
_PLACES = ["Bureau", "Chez le client, 12 rue de la Paix, Paris", "Lyon, agence", "Visio",
           "Entrepôt", ""]
_CLIENTS = ["SARL Dupont", "M. Lefèvre", "Boulangerie Moreau", "Garage Petit", "Mme Girard"]


def load_demo(store: Store, today: date | None = None) -> list[str]:
    """Create the demo users that do not exist yet, with their agenda. Returns their logins."""
    today = today or date.today()
    created = []
    for login, name in DEMO_USERS.items():
        if store.user(login) is not None:
            continue
        store.add_user(login, login, name=name, email=f"{login}@example.com", timezone=TZ)
        _fill_agenda(store, login, today, random.Random(f"{login}-{today.isoformat()}"))
        created.append(login)
    return created


def _timed(day: date, hour: int, minute: int, minutes: int, **texts) -> EventData:
    start = local_to_utc(datetime.combine(day, time(hour, minute)), TZ)
    return EventData(start=start, end=start + timedelta(minutes=minutes), tzid=TZ, **texts)


def _fill_agenda(store: Store, login: str, today: date, rng: random.Random) -> None:
    singles = APPOINTMENTS_PER_USER - 2  # plus one all-day, plus the weekly series
    for n in range(singles):
        day = today + timedelta(days=1 + n * 42 // singles)
        if day.weekday() >= 5:
            day += timedelta(days=7 - day.weekday())
        store.add_action(login, _timed(
            day, rng.choice([8, 9, 10, 11, 14, 15, 16, 17]), rng.choice([0, 30]),
            rng.choice([30, 45, 60, 90]), subject=rng.choice(_SUBJECTS),
            location=rng.choice(_PLACES), contact=rng.choice(_CLIENTS),
            notes="Préparer le dossier.\nApporter le catalogue, les tarifs 2027."))
    seminar = today + timedelta(days=10)
    store.add_action(login, EventData(
        start=date_to_utc(seminar, TZ), end=date_to_utc(seminar + timedelta(days=1), TZ),
        tzid=TZ, all_day=True, subject="Séminaire annuel", location="Annecy"))
    store.put_object(login, "point-hebdo.ics", _weekly_series(login, today))
    for n in range(6):
        day = today + timedelta(days=2 + 5 * n)
        kind = ActionType.CALL if n % 2 else ActionType.TASK
        store.add_action(login, _timed(day, 12, 0, 15, subject=f"{kind.value.title()} "
                                       f"{rng.choice(_CLIENTS)}"), type_=kind)


def _weekly_series(login: str, today: date) -> str:
    """A weekly team meeting: ten Mondays, the third moved to the afternoon, the fifth
    cancelled."""
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    stamp = lambda day, hour: f"{day:%Y%m%d}T{hour:02d}0000"  # noqa: E731
    third, fifth = monday + timedelta(weeks=2), monday + timedelta(weeks=4)
    return "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//gestan-bridge//demo//FR",
        "BEGIN:VEVENT", f"UID:point-hebdo-{login}@gestan-bridge",
        f"DTSTART;TZID={TZ}:{stamp(monday, 9)}", f"DTEND;TZID={TZ}:{stamp(monday, 10)}",
        "SUMMARY:Point hebdo", "LOCATION:Salle de réunion", "RRULE:FREQ=WEEKLY;COUNT=10",
        f"EXDATE;TZID={TZ}:{stamp(fifth, 9)}",
        "BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:Point hebdo", "TRIGGER:-PT15M",
        "END:VALARM", "END:VEVENT",
        "BEGIN:VEVENT", f"UID:point-hebdo-{login}@gestan-bridge",
        f"RECURRENCE-ID;TZID={TZ}:{stamp(third, 9)}",
        f"DTSTART;TZID={TZ}:{stamp(third, 14)}", f"DTEND;TZID={TZ}:{stamp(third, 15)}",
        "SUMMARY:Point hebdo (déplacé)", "LOCATION:Salle de réunion", "END:VEVENT",
        "END:VCALENDAR", ""])
