"""Gestan users: bcrypt passwords, settings, and the per-user revision counter."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time

import bcrypt
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from bridge.config import env
from bridge.ical.timezones import is_iana, now_utc
from bridge.store.records import User
from bridge.store.schema import users

LOGIN_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Cost 12 is bcrypt's default; tests may lower it through the environment.
BCRYPT_ROUNDS = int(env("GESTAN_BRIDGE_BCRYPT_ROUNDS") or "12")
LOGIN_CACHE_SECONDS = 60


class UserError(ValueError):
    """A user-facing error about users (unknown login, bad value...)."""


# Checked against for logins that do not exist, at the same cost as real hashes. Making one
# at cost 12 takes 0.3 s, which every command would pay at start: the default cost's is
# written here (it is no secret: only its cost matters).
_DEFAULT_DUMMY_HASH = b"$2b$12$tQXRgD2IqUdhE6RQUjyjTeLAAyZGEomO5TtWwrl6HPmfZ5OQD2evq"
_DUMMY_HASH = (_DEFAULT_DUMMY_HASH if BCRYPT_ROUNDS == 12
               else bcrypt.hashpw(b"no such user", bcrypt.gensalt(BCRYPT_ROUNDS)))


def hash_password(password: str) -> str:
    if not password:
        raise UserError("the password must not be empty")
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


def check_login(login: str) -> str:
    if not LOGIN_PATTERN.match(login or ""):
        raise UserError(f"invalid login {login!r}: use lowercase letters, digits, '.', '_' or '-'")
    return login


def check_timezone(name: str) -> str:
    if not is_iana(name):
        raise UserError(f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)")
    return name


_BY_LOGIN = select(users).where(users.c.login == bindparam("b_login"))  # built once
_NEXT_REVISION = (update(users).where(users.c.id == bindparam("b_id"))
                  .values(revision=users.c.revision + 1).returning(users.c.revision))


def get(conn: Connection, login: str) -> User | None:
    row = conn.execute(_BY_LOGIN, {"b_login": login}).first()
    return User.from_row(row) if row else None


def get_by_id(conn: Connection, user_id: int) -> User:
    return User.from_row(conn.execute(select(users).where(users.c.id == user_id)).one())


def require(conn: Connection, login: str) -> User:
    return existing(login, get(conn, login))


def existing(login: str, user: User | None) -> User:
    """``user``, or the error that ``login`` names no user."""
    if user is None:
        raise UserError(f"unknown user {login!r}")
    return user


def all_users(conn: Connection) -> list[User]:
    return [User.from_row(r) for r in conn.execute(select(users).order_by(users.c.login))]


def add(conn: Connection, login: str, password: str, *, name: str = "", email: str = "",
        timezone: str = "Europe/Paris", is_admin: bool = False) -> User:
    check_login(login)
    check_timezone(timezone)
    if get(conn, login):
        raise UserError(f"user {login!r} already exists")
    conn.execute(users.insert().values(
        login=login, name=name or login, email=email, timezone=timezone,
        password_hash=hash_password(password), is_admin=is_admin, settings="{}",
        calendar_props="{}", revision=0, created_at=now_utc()))
    return require(conn, login)


def set_fields(conn: Connection, login: str, *, password: str | None = None,
               settings: dict | None = None, calendar_props: dict | None = None,
               **fields) -> User:
    """Change a user; ``settings``/``calendar_props`` are merged, None values removed."""
    user = require(conn, login)
    values = {k: v for k, v in fields.items() if v is not None}
    if "timezone" in values:
        check_timezone(values["timezone"])
    if password is not None:
        values["password_hash"] = hash_password(password)
    if settings:
        values["settings"] = _merged(user.settings, settings)
    if calendar_props:
        values["calendar_props"] = _merged(user.calendar_props, calendar_props)
    if values:
        conn.execute(update(users).where(users.c.id == user.id).values(**values))
    return require(conn, login)


def _merged(current: dict, changes: dict) -> str:
    merged = {**current, **changes}
    return json.dumps({k: v for k, v in merged.items() if v is not None}, sort_keys=True)


def next_revision(conn: Connection, user_id: int) -> int:
    """Take the user's next revision.

    The UPDATE locks the user's row until commit, so two writers of one user commit in
    revision order: a sync token never skips a change committed later with a lower number.
    """
    return conn.execute(_NEXT_REVISION, {"b_id": user_id}).scalar_one()


class LoginGuard:
    """Counts failed logins, to stop guessing without locking an office out.

    Per login: after ``per_login`` failures within ``window`` seconds, that login is refused
    (even with the right password) until the window has passed. Per address, for logins
    that do not exist: after ``per_address`` such failures, unknown logins from that address
    are refused; users who exist keep logging in from it (an office behind one router,
    Gestan calling from one host).
    """

    def __init__(self, per_login: int = 10, per_address: int = 20, window: float = 900.0,
                 clock=time.monotonic) -> None:
        self.per_login, self.per_address, self.window = per_login, per_address, window
        self._clock = clock
        self._failures: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def blocked(self, login: str, address: str | None, known: bool) -> float | None:
        """Seconds until ``login`` may try again, or None when it may now."""
        now = self._clock()
        with self._lock:
            keys = [("login", login)] if known else [("address", address or "")]
            for key in keys:
                times = self._recent(key, now)
                limit = self.per_login if key[0] == "login" else self.per_address
                if len(times) >= limit:
                    return self.window - (now - times[-limit])
        return None

    def failed(self, login: str, address: str | None, known: bool) -> None:
        key = ("login", login) if known else ("address", address or "")
        with self._lock:
            self._failures.setdefault(key, []).append(self._clock())
            if len(self._failures) > 100_000:  # bounded memory under a flood
                self._failures.clear()

    def succeeded(self, login: str) -> None:
        with self._lock:
            self._failures.pop(("login", login), None)


class LoginCache:
    """Remembers recent successful bcrypt checks: phones authenticate on every request.

    Keyed by the stored hash, so a password change invalidates at once; only a salted
    digest of the password is kept in memory.
    """

    def __init__(self, seconds: float = LOGIN_CACHE_SECONDS) -> None:
        self._seconds = seconds
        self._salt = os.urandom(16)
        self._entries: dict[tuple[str, bytes], float] = {}
        self._lock = threading.Lock()
        self._flights: dict[str, threading.Lock] = {}

    def _flight(self, login: str) -> threading.Lock:
        with self._lock:
            if len(self._flights) > 10_000:
                self._flights.clear()
            return self._flights.setdefault(login, threading.Lock())

    @staticmethod
    def burn(password: str) -> None:
        """A bcrypt check as costly as a real one, for a login that does not exist: the
        answer takes as long whether the user exists or not (no user enumeration)."""
        bcrypt.checkpw(password.encode("utf-8"), _DUMMY_HASH)

    def check(self, user: User, password: str) -> bool:
        """Whether ``password`` is the user's; one bcrypt check per user at a time (fifty
        phones logging in at once wait for the first check, then find it cached)."""
        key = (user.password_hash, hashlib.sha256(self._salt + password.encode()).digest())
        with self._flight(user.login):
            with self._lock:
                expiry = self._entries.get(key)
            if expiry and expiry > time.monotonic():
                return True
            try:
                ok = bcrypt.checkpw(password.encode("utf-8"), user.password_hash.encode())
            except ValueError:
                ok = False
        now = time.monotonic()
        if ok:
            with self._lock:
                if len(self._entries) > 10000:
                    self._entries.clear()
                self._entries[key] = now + self._seconds
        return ok
