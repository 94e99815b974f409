"""Deterministic appointments for the CalDAV benchmark, as a phone would PUT them.

``generate(n, seed, base)`` always gives the same bytes for the same arguments. Proportions
are exact quotas (rounded), not draws, so small runs still hold every kind of item:

- 60 % Europe/Paris and 40 % America/Montreal, each object carrying its VTIMEZONE;
- 5 % all-day (DATE values, exclusive DTEND, one to three working days);
- 2 % weekly series (RRULE COUNT 8 to 20) with one EXDATE (the third occurrence);
- 30 % with a VALARM;
- French text with accents, commas, semicolons and newlines (escaped and folded per RFC 5545);
- spread over the 365 days after ``base``, Monday to Friday, 08:00 to 19:30 local time.

``expected_hrefs(items, start, end)`` is the client-side answer of a VEVENT time-range query,
computed with recurring-ical-events.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PARIS = "Europe/Paris"
MONTREAL = "America/Montreal"

VTIMEZONES = {
    PARIS: (
        "BEGIN:VTIMEZONE", "TZID:Europe/Paris", "X-LIC-LOCATION:Europe/Paris",
        "BEGIN:DAYLIGHT", "TZOFFSETFROM:+0100", "TZOFFSETTO:+0200", "TZNAME:CEST",
        "DTSTART:19700329T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", "END:DAYLIGHT",
        "BEGIN:STANDARD", "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "TZNAME:CET",
        "DTSTART:19701025T030000", "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", "END:STANDARD",
        "END:VTIMEZONE"),
    MONTREAL: (
        "BEGIN:VTIMEZONE", "TZID:America/Montreal", "X-LIC-LOCATION:America/Montreal",
        "BEGIN:DAYLIGHT", "TZOFFSETFROM:-0500", "TZOFFSETTO:-0400", "TZNAME:EDT",
        "DTSTART:19700308T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU", "END:DAYLIGHT",
        "BEGIN:STANDARD", "TZOFFSETFROM:-0400", "TZOFFSETTO:-0500", "TZNAME:EST",
        "DTSTART:19701101T020000", "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU", "END:STANDARD",
        "END:VTIMEZONE"),
}

SUBJECTS = (
    "Rendez-vous client", "Réunion de chantier", "Visite technique", "Entretien annuel",
    "Point trimestriel", "Présentation du devis", "Signature du contrat", "Déjeuner d'affaires",
    "Formation sécurité", "Révision comptable", "Expertise après sinistre", "État des lieux",
    "Mise en service", "Bilan de fin d'année", "Dépannage chaudière",
)
PEOPLE = (
    "Mme Hélène Lefèvre", "M. François Bégin", "Mme Zoé Côté", "M. Jérôme Gagné",
    "Mme Léa Séguin", "M. Benoît Thériault", "Mme Agnès Dupré", "M. Noël Bélanger",
    "Mme Maëlle Pétain-Roy", "M. Çağan Öztürk",
)
COMPANIES = (
    "SARL Les Ateliers Réunis", "Boulangerie-Pâtisserie du Marché", "Cabinet Müller & Fils",
    "Électricité Générale, Québec", "Menuiserie L'Érable", "Garage des Écoles",
    "Crèche « Les Petits Loups »", "Hôtel-Restaurant Le Relais",
)
STREETS = {
    PARIS: (("rue de la Paix", "75002 Paris"), ("rue du Faubourg-Saint-Honoré", "75008 Paris"),
            ("avenue Jean-Jaurès", "69007 Lyon"), ("place de l'Église", "33000 Bordeaux"),
            ("boulevard Gambetta", "59000 Lille")),
    MONTREAL: (("rue Saint-Denis", "Montréal (Québec) H2X 3K8"),
               ("boulevard René-Lévesque", "Montréal (Québec) H3B 4W8"),
               ("chemin de la Côte-des-Neiges", "Montréal (Québec) H3T 1J4"),
               ("rue Sainte-Catherine", "Montréal (Québec) H2L 2C6")),
}
NOTES = (
    "Objet : {subject}\nÀ prévoir : devis n° {number}, plans, attestation d'assurance.\n"
    "Code d'accès : {code} ; 2e étage, porte à gauche.",
    "Rappeler la veille pour confirmer, sinon reporter.\nDocuments : bon de commande, "
    "facture n° {number} ; RIB.\nStationnement difficile, prévoir 10 min de marge.",
    "Ordre du jour :\n- point sur l'avancement, planning\n- budget révisé (+{code} €)\n"
    "- questions diverses",
    "Client fidèle depuis 2011, très ponctuel.\nNe pas oublier : échantillons, catalogue "
    "été/hiver, tarifs « pro ».",
)
DURATIONS = (30, 45, 60, 60, 60, 90, 120)
PRODID = "-//Gestan//caldav-bench 1.0//FR"


@dataclass(frozen=True)
class Appointment:
    """One calendar object as PUT by a phone, with what the bench needs to check answers."""

    uid: str
    href: str
    tzid: str  # the zone of the timed item (all-day items keep one for the record only)
    all_day: bool
    series: bool
    alarm: bool
    summary: str
    location: str
    description: str
    start: datetime | date  # local (naive) datetime, or date when all-day
    end: datetime | date
    count: int = 1  # occurrences of a weekly series (before the EXDATE)
    stamp: datetime = field(default=datetime(2000, 1, 1, tzinfo=UTC))
    sequence: int = 0

    @property
    def exdate(self) -> datetime | None:
        return self.start + timedelta(weeks=2) if self.series else None  # type: ignore[operator]

    def span_utc(self) -> tuple[datetime, datetime]:
        """First instant and last end (UTC) of every occurrence, for rough pre-filtering."""
        last = (self.count - 1) * timedelta(weeks=1)
        if self.all_day:
            first = datetime.combine(self.start, time(), UTC)  # type: ignore[arg-type]
            stop = datetime.combine(self.end, time(), UTC)  # type: ignore[arg-type]
            return first - timedelta(hours=14), stop + last + timedelta(hours=14)
        zone = ZoneInfo(self.tzid)
        first = self.start.replace(tzinfo=zone).astimezone(UTC)  # type: ignore[union-attr]
        stop = (self.end + last).replace(tzinfo=zone).astimezone(UTC)  # type: ignore[union-attr]
        return first, stop

    def changed(self, version: int) -> Appointment:
        """The same appointment edited on the phone (title and SEQUENCE), times unchanged."""
        return replace(self, summary=f"{self.summary} (modifié n° {version})",
                       sequence=self.sequence + version,
                       stamp=self.stamp + timedelta(minutes=version))

    def ics(self) -> str:
        return render(self)


# ---------------------------------------------------------------- rendering

def escape_text(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def fold(line: str) -> str:
    """RFC 5545 folding at 75 octets, never inside a UTF-8 sequence."""
    data = line.encode()
    if len(data) <= 75:
        return line
    parts: list[str] = []
    current, limit = bytearray(), 75
    for char in line:
        encoded = char.encode()
        if len(current) + len(encoded) > limit:
            parts.append(current.decode())
            current, limit = bytearray(), 74
        current += encoded
    parts.append(current.decode())
    return "\r\n ".join(parts)


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _local(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


def render(item: Appointment) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", "CALSCALE:GREGORIAN"]
    if not item.all_day:
        lines += VTIMEZONES[item.tzid]
    stamp = _stamp(item.stamp)
    lines += ["BEGIN:VEVENT", f"UID:{item.uid}", f"DTSTAMP:{stamp}", f"CREATED:{stamp}",
              f"LAST-MODIFIED:{stamp}", f"SEQUENCE:{item.sequence}"]
    if item.all_day:
        lines += [f"DTSTART;VALUE=DATE:{item.start:%Y%m%d}", f"DTEND;VALUE=DATE:{item.end:%Y%m%d}"]
    else:
        lines += [f"DTSTART;TZID={item.tzid}:{_local(item.start)}",  # type: ignore[arg-type]
                  f"DTEND;TZID={item.tzid}:{_local(item.end)}"]  # type: ignore[arg-type]
    if item.series:
        lines += [f"RRULE:FREQ=WEEKLY;COUNT={item.count}",
                  f"EXDATE;TZID={item.tzid}:{_local(item.exdate)}"]  # type: ignore[arg-type]
    lines += [f"SUMMARY:{escape_text(item.summary)}", f"LOCATION:{escape_text(item.location)}",
              f"DESCRIPTION:{escape_text(item.description)}", "STATUS:CONFIRMED",
              "TRANSP:OPAQUE" if not item.all_day else "TRANSP:TRANSPARENT"]
    if item.alarm:
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:Rappel : rendez-vous",
                  "TRIGGER:-PT15M", "END:VALARM"]
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "".join(fold(line) + "\r\n" for line in lines)


# ---------------------------------------------------------------- generation

def _quota(rng: random.Random, n: int, share: float, minimum: int = 0,
           exclude: set[int] = frozenset()) -> set[int]:
    pool = [i for i in range(n) if i not in exclude]
    count = min(len(pool), max(minimum, round(n * share)))
    return set(rng.sample(pool, count))


def _working_day(base: date, rng: random.Random, first: int, last: int) -> date:
    """A Monday-to-Friday day in base + [first, last] days."""
    while True:
        day = base + timedelta(days=rng.randint(first, last))
        if day.weekday() < 5:
            return day


def generate(n: int, seed: int = 2024, base: date | None = None) -> list[Appointment]:
    """``n`` appointments in the 365 days after ``base`` (default: today)."""
    base = base or date.today()
    rng = random.Random(f"gestan-bench/{seed}/{n}")
    indices = list(range(n))
    montreal = _quota(rng, n, 0.40)
    all_day = _quota(rng, n, 0.05, 1 if n >= 20 else 0)
    series = _quota(rng, n, 0.02, 1 if n >= 20 else 0, exclude=all_day)
    alarms = _quota(rng, n, 0.30)
    stamp = datetime.combine(base - timedelta(days=1), time(9, 0), UTC)
    items: list[Appointment] = []
    for index in indices:
        tzid = MONTREAL if index in montreal else PARIS
        uid = str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()
        subject, person, company = (rng.choice(SUBJECTS), rng.choice(PEOPLE),
                                    rng.choice(COMPANIES))
        street, city = rng.choice(STREETS[tzid])
        number = rng.randint(1000, 9999)
        description = rng.choice(NOTES).format(subject=subject.lower(), number=number,
                                               code=rng.randint(10, 999))
        phone = f"0{rng.randint(100000000, 799999999)}"
        description += f"\nContact : {person}, {company} ; tél. {phone}"
        count = 1
        if index in all_day:
            day = _working_day(base, rng, 1, 360)
            length = rng.randint(1, 3)
            while (day + timedelta(days=length - 1)).weekday() > 4:
                length -= 1
            start, end = day, day + timedelta(days=length)
        else:
            count = rng.randint(8, 20) if index in series else 1
            day = _working_day(base, rng, 1, 365 - 7 * (count - 1))
            minutes = rng.randrange(8 * 60, 17 * 60 + 31, 15)
            duration = rng.choice(DURATIONS)
            start = datetime.combine(day, time(minutes // 60, minutes % 60))
            end = start + timedelta(minutes=duration)
        items.append(Appointment(
            uid=uid, href=f"{uid}.ics", tzid=tzid, all_day=index in all_day,
            series=index in series, alarm=index in alarms,
            summary=f"{subject} – {person}, {company}",
            location=f"{rng.randint(1, 180)}, {street}, {city}", description=description,
            start=start, end=end, count=count, stamp=stamp))
    return items


# ---------------------------------------------------------------- expected answers

def expected_hrefs(items: list[Appointment], start: datetime, end: datetime) -> set[str]:
    """Hrefs of the objects with at least one instance overlapping [start, end)
    (recurring-ical-events on each object's text)."""
    import icalendar
    import recurring_ical_events

    found: set[str] = set()
    margin = timedelta(days=2)
    for item in items:
        first, last = item.span_utc()
        if last < start - margin or first > end + margin:
            continue  # cannot overlap: no need to parse
        calendar = icalendar.Calendar.from_ical(item.ics())
        if recurring_ical_events.of(calendar).between(start, end):
            found.add(item.href)
    return found
