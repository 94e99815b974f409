"""gestan-bridge's settings: one schema, one precedence, and the only module that reads the
environment or the configuration file.

The file is Radicale's own ``radicale.conf`` plus a ``[gestan]`` section for ours. Each value
comes from the strongest source that gives it: the command line, then the environment, then
the file, then the default. Every setting of the file is honoured or refused when the server
starts (:func:`refusal`), with a one-line reason: nothing in it is silently ignored.

Which file: ``serve --config FILE`` (then it is the process's file), else
``$GESTAN_BRIDGE_CONFIG``, else ``./radicale.conf`` when there is one, else none. Every command
reads its ``[gestan]`` section (a ``db_url`` there is the database of ``users`` and ``agenda``
too); only ``serve`` reads Radicale's sections.

Nothing here imports Radicale or the store: every command imports this module.
"""

from __future__ import annotations

import configparser
import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_ENV = "GESTAN_BRIDGE_CONFIG"
DEFAULT_FILE = Path("radicale.conf")
SECTION = "gestan"


class ConfigError(ValueError):
    """A setting that cannot be honoured, or a file that cannot be read: one line."""


# ------------------------------------------------------------------ value types
def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is not between {low} and {high}")
        return value
    return parse


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number between 0 and 1, got {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise ValueError(f"{text} is not a fraction above 0 and at most 1")
    return value


def _db_url(text: str) -> str:
    if "://" not in text:
        raise ValueError(f"{text!r} is not a database URL (sqlite:///FILE or "
                         "postgresql+psycopg://USER@HOST/DB)")
    return text


def _directory(text: str) -> Path:
    if not text.strip():
        raise ValueError("empty directory")
    return Path(text).expanduser()


@dataclass(frozen=True)
class Setting:
    """One ``[gestan]`` setting: its default, its environment variable, what it means."""

    name: str
    default: str
    help: str
    env: str | None = None
    parse: Callable[[str], Any] = str


DEFAULT_DB_URL = "sqlite:///gestan.db"
DEFAULT_TOKEN_DIR = "~/.local/share/gestan-bridge/tokens"

SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("db_url", DEFAULT_DB_URL, "the agenda database (SQLite file or PostgreSQL)",
            env="GESTAN_BRIDGE_DB", parse=_db_url),
    Setting("token_dir", DEFAULT_TOKEN_DIR,
            "where Google and Outlook credentials are kept (one 0600 file per user)",
            env="GESTAN_BRIDGE_TOKEN_DIR", parse=_directory),
    Setting("sync_days_back", "0", "a sync also covers appointments that ended up to this "
            "many days ago (a user's own setting wins)", parse=_whole(0, 3650)),
    Setting("mass_delete_ratio", "0.5", "a sync that would delete more than this share of "
            "a user's appointments stops instead", parse=_ratio),
    Setting("mass_delete_min", "10", "the mass-delete stop applies from this many deletions "
            "in one run", parse=_whole(1, 1_000_000)),
    Setting("requests_at_once", "3", "CalDAV requests worked on at once, the others served "
            "in arrival order (one process computes on one core: more at once only share "
            "it, and make answers uneven); 0: no limit", parse=_whole(0, 1000)),
)}

# Environment variables that are not settings of the file: endpoints for tests and proxies,
# a debugging switch, the bcrypt cost. Read through :func:`env` like the others.
ENVIRONMENT_ONLY = {
    CONFIG_ENV: "the configuration file (instead of ./radicale.conf)",
    "GESTAN_BRIDGE_DEBUG": "set: an unexpected error shows its traceback",
    "GESTAN_BRIDGE_BCRYPT_ROUNDS": "bcrypt cost of new password hashes (default 12)",
    "GESTAN_BRIDGE_GOOGLE_TOKEN_URI": "Google's token endpoint (tests, proxies)",
    "GESTAN_BRIDGE_GOOGLE_AUTH_URI": "Google's consent page (tests, proxies)",
    "GESTAN_BRIDGE_GOOGLE_API_URL": "Google Calendar's API root (tests, proxies)",
    "GESTAN_BRIDGE_GRAPH_API_URL": "Microsoft Graph's API root (tests, proxies)",
    "GESTAN_BRIDGE_GRAPH_AUTHORITY": "Microsoft's login authority (tests, proxies)",
    "REQUESTS_CA_BUNDLE": "CA bundle trusted for Microsoft Graph (as requests does)",
    "SSL_CERT_FILE": "CA bundle trusted for Microsoft Graph, if REQUESTS_CA_BUNDLE is unset",
}
KNOWN_ENV = {s.env for s in SETTINGS.values() if s.env} | set(ENVIRONMENT_ONLY)


def env(name: str) -> str | None:
    """The environment variable ``name`` (one of :data:`KNOWN_ENV`), None when unset or
    empty. The only place gestan-bridge reads its environment."""
    if name not in KNOWN_ENV:
        raise KeyError(f"{name} is not one of gestan-bridge's environment variables")
    return os.environ.get(name) or None


# ------------------------------------------------------------------ Radicale's sections
# The body limit shared by Radicale (``[server] max_content_length``), our request checks and
# the iCalendar parser. Radicale's own default (100 MB) is far above any appointment.
DEFAULT_MAX_CONTENT_LENGTH = 1_000_000
# Radicale's settings whose defaults gestan-bridge changes (the file still wins).
RADICALE_DEFAULTS = {
    "server": {"hosts": "127.0.0.1:5232",
               "max_content_length": str(DEFAULT_MAX_CONTENT_LENGTH)},
}

# The plugin ``type`` each section must have (leaving it out is the same).
TYPES = {
    "server": (("builtin",), "gestan-bridge runs Radicale's built-in server with its own "
               "application; hypercorn is not supported"),
    "auth": (("plugins.auth",), "logins are Gestan's users (gestan-bridge users add)"),
    "rights": (("plugins.rights",), "each user reads and writes their own calendar, an "
               "admin every user's (users set --admin)"),
    "storage": (("plugins.storage",), "the agenda is the database ([gestan] db_url)"),
    "web": (("internal", "none"), "Radicale's web UI is internal or none"),
    "group": (("none",), "gestan-bridge has no user groups (admins are flagged per user)"),
    "sharing": (("none",), "calendars are shared with admins only"),
    "hook": (("none",), "Radicale's hooks are not run on the agenda store"),
}

ALL = "*"
# Honoured by Radicale's application on top of our plugins, or by our server.
HONOURED: dict[str, frozenset[str] | str] = {
    "server": frozenset({
        "hosts", "max_connections", "max_content_length", "timeout", "ssl", "certificate",
        "key", "certificate_authority", "protocol", "ciphersuite", "delay_on_error",
        "max_resource_size", "max_vevent_rrule_occurrence", "script_name",
        "validate_user_value", "validate_path_value"}),
    "encoding": frozenset({"request", "stock"}),
    "auth": frozenset({"delay", "realm", "remote_ip_source", "strip_domain", "lc_username",
                       "urldecode_username"}),
    "rights": frozenset({"permit_delete_collection", "permit_overwrite_collection"}),
    "storage": frozenset({"strict_preconditions"}),
    "web": frozenset({"prefer_browser_login"}),
    "logging": ALL,
    "reporting": ALL,
    "headers": ALL,   # extra response headers, Radicale's own free-form section
}

# Radicale's [auth] remote_ip_source values (radicale.auth.REMOTE_ADDR_SOURCE): the
# socket's address, or a reverse proxy's X-Remote-Addr header.
REMOTE_IP_SOURCES = ("REMOTE_ADDR", "X-Remote-Addr")
_NOT_FILES = "the agenda is in the database ([gestan] db_url), not in Radicale's folders"
_BACKENDS = "belongs to another Radicale login backend; logins are Gestan's users"
REFUSED: dict[str, dict[str, str]] = {
    "auth": {
        "cache_logins": "gestan-bridge caches logins itself (60 s) and counts failures "
                        "(Radicale's cache would skip the failure limit)",
        "cache_successful_logins_expiry": "only with cache_logins, which is refused",
        "cache_failed_logins_expiry": "only with cache_logins, which is refused",
        "uc_username": "logins are lowercase",
    },
    "group": {"htgroup_filename": TYPES["group"][1], "htgroup_cache": TYPES["group"][1],
              "group_collections_folder": TYPES["group"][1]},
    "rights": {"file": TYPES["rights"][1]},
    "storage": {
        **{name: _NOT_FILES for name in (
            "filesystem_folder", "filesystem_cache_folder", "use_cache_subfolder_for_item",
            "use_cache_subfolder_for_history", "use_cache_subfolder_for_synctoken",
            "use_mtime_and_size_for_item_cache", "folder_umask", "skip_broken_item")},
        "max_sync_token_age": "sync tokens come from the store's journal and stay valid",
        "hook": "the agenda store runs no storage hook",
        "predefined_collections": "each user has exactly one calendar, /<login>/rendez-vous/",
        "db_url": "the database is set in [gestan] db_url",
    },
}
# Whole families: a login backend's settings, every option of a section that must stay off.
REFUSED_PREFIXES = {"auth": ("htpasswd_", "dovecot_", "ldap_", "imap_", "oauth2_", "pam_")}
REFUSED_SECTIONS = {"sharing": TYPES["sharing"][1], "hook": TYPES["hook"][1]}


def refusal(section: str, option: str, value: str) -> str | None:
    """Why ``[section] option = value`` is refused, or None when it is honoured."""
    if option == "type" and section in TYPES:
        allowed, reason = TYPES[section]
        return None if value.strip() in allowed else \
            f"must be {' or '.join(allowed)}: {reason}"
    honoured = HONOURED.get(section, frozenset())
    if honoured == ALL or option in honoured:
        return None
    if option in REFUSED.get(section, {}):
        return REFUSED[section][option]
    if option.startswith(REFUSED_PREFIXES.get(section, ())):
        return _BACKENDS
    if section in REFUSED_SECTIONS:
        return REFUSED_SECTIONS[section]
    return "unknown setting"


def radicale_problems(sections: Mapping[str, Mapping[str, str]], source: str) -> list[str]:
    """One line per refused setting of Radicale's sections, naming the file."""
    problems = []
    for section, options in sections.items():
        if section == SECTION:
            continue
        if section not in HONOURED and section not in TYPES:
            problems.append(f"{source}: unknown section [{section}]")
            continue
        for option, value in options.items():
            reason = refusal(section, option, value)
            if reason:
                problems.append(f"{source}: [{section}] {option} is refused: {reason}")
    source_ip = sections.get("auth", {}).get("remote_ip_source", "REMOTE_ADDR").strip()
    if source_ip not in REMOTE_IP_SOURCES:  # Radicale would quietly use the socket's address
        problems.append(f"{source}: [auth] remote_ip_source = {source_ip[:40]} is refused: "
                        f"must be {' or '.join(REMOTE_IP_SOURCES)}")
    limit = sections.get("server", {}).get("max_content_length", "").strip()
    if limit == "0":
        problems.append(f"{source}: [server] max_content_length = 0 (no limit) is refused: "
                        "gzip bodies need a bound")
    return problems


# ------------------------------------------------------------------ the file
_cache: dict[Path, tuple[tuple[int, int], dict[str, dict[str, str]]]] = {}
_cache_lock = threading.Lock()
_process_file: Path | None = None


def read(path: Path) -> dict[str, dict[str, str]]:
    """The file's sections (``{section: {option: text}}``), parsed as Radicale does (no
    interpolation, option names lowercased); cached until the file changes."""
    path = Path(path)
    try:
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        with _cache_lock:
            cached = _cache.get(path)
        if cached and cached[0] == key:
            return cached[1]
        parser = configparser.RawConfigParser()
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: "
                          f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"the configuration file {path} is not UTF-8 text") from None
    except configparser.Error as exc:
        first = " ".join((str(exc).splitlines() or [""])[0].split())
        raise ConfigError(f"the configuration file {path} is not an INI file: {first}"
                          ) from None
    sections = {name: dict(parser.items(name)) for name in parser.sections()}
    with _cache_lock:
        _cache[path] = (key, sections)
    return sections


@contextlib.contextmanager
def using(path: Path | None) -> Iterator[None]:
    """``path`` is the process's configuration file inside the block (``serve --config``:
    the running server's settings are every part's), the previous one after."""
    global _process_file
    previous = _process_file
    _process_file = Path(path) if path is not None else previous
    try:
        yield
    finally:
        _process_file = previous


def active_file() -> Path | None:
    """The process's file: the one given to :func:`using`, else ``$GESTAN_BRIDGE_CONFIG``,
    else ``./radicale.conf`` if it exists."""
    if _process_file is not None:
        return _process_file
    named = env(CONFIG_ENV)
    if named:
        return Path(named).expanduser()
    return DEFAULT_FILE if DEFAULT_FILE.is_file() else None


class Settings:
    """The ``[gestan]`` settings of one file (or of none), with the precedence applied."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self.sections = read(self.path) if self.path is not None else {}
        self.source = f"configuration file {self.path}" if self.path else "defaults"
        self._values: dict[str, Any] = {}
        for name, text in self.sections.get(SECTION, {}).items():
            setting = SETTINGS.get(name)
            if setting is None:
                raise ConfigError(f"{self.path}: [{SECTION}] {name} is refused: unknown setting "
                                  f"(known: {', '.join(SETTINGS)})")
            self._values[name] = _parsed(setting, text, f"[{SECTION}] {name} in {self.path}")

    def get(self, name: str, given: Any = None) -> Any:
        """``given`` (the command line) if not None, else the environment, else the file,
        else the default."""
        if given is not None:
            return given
        setting = SETTINGS[name]
        from_env = env(setting.env) if setting.env else None
        if from_env is not None:
            return _parsed(setting, from_env, f"${setting.env}")
        if name in self._values:
            return self._values[name]
        return _parsed(setting, setting.default, "default")

    def radicale(self, section: str, option: str) -> str | None:
        """The file's text for one of Radicale's settings, or None."""
        return self.sections.get(section, {}).get(option)


def _parsed(setting: Setting, text: str, where: str) -> Any:
    try:
        return setting.parse(text.strip())
    except ValueError as exc:
        raise ConfigError(f"invalid {where}: {exc}") from None


def settings(path: Path | None = None) -> Settings:
    """The settings of ``path``, else of the process's file (:func:`active_file`)."""
    return Settings(path if path is not None else active_file())


def setting(name: str, given: Any = None) -> Any:
    """One ``[gestan]`` value of the process's file, with the precedence applied."""
    return settings().get(name, given)


def max_content_length() -> int:
    """The body limit of the process's file (``[server] max_content_length``), else ours.
    The server's own comes from its configuration; this serves the parser and the CLI."""
    path = active_file()
    text = read(path).get("server", {}).get("max_content_length") if path else None
    try:
        value = int(text) if text is not None else DEFAULT_MAX_CONTENT_LENGTH
    except ValueError:
        raise ConfigError(f"invalid [server] max_content_length {text!r}: expected bytes"
                          ) from None
    return value if value > 0 else DEFAULT_MAX_CONTENT_LENGTH
