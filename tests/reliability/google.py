"""Users connected to the Google fake, as `gestan-bridge google connect` leaves them: a token
file per user (in a throwaway token directory), the calendar's name in their settings, and
the environment that points the bridge (a server or a CLI run, in this process or another)
at the fake."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

from bridge.store import Store
from bridge.targets.google_auth import save_credentials
from tests.fakes.google_calendar import FakeGoogleCalendar

CALENDAR = "Gestan RDV"


@contextlib.contextmanager
def connected_google(store: Store, logins: list[str], token_dir: Path,
                     fake: FakeGoogleCalendar | None = None
                     ) -> Iterator[tuple[FakeGoogleCalendar, dict[str, str], dict[str, str]]]:
    """Yield (fake, calendar id by login, environment). Each login gets its own calendar
    and its own refresh token; the client secret is random too, so that a test can look
    for every secret in a log. ``fake``: a fake not yet started (a subclass)."""
    with fake or FakeGoogleCalendar() as fake:
        fake.client_secret = secrets.token_urlsafe(24)
        calendars = {}
        for login in logins:
            calendars[login] = fake.add_calendar(f"{CALENDAR} {login}")
            refresh = f"1//rt-{secrets.token_urlsafe(32)}"
            fake.grant_refresh_token(refresh)
            save_credentials(login, fake.credentials(refresh_token=refresh), token_dir)
            store.set_user(login, settings={"google_calendar": f"{CALENDAR} {login}"})
        yield fake, calendars, {"GESTAN_BRIDGE_TOKEN_DIR": str(token_dir),
                                "GESTAN_BRIDGE_GOOGLE_API_URL": fake.api_url,
                                "GESTAN_BRIDGE_GOOGLE_TOKEN_URI": fake.token_uri}
