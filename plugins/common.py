"""What the three plugins share: the store named by the configuration, the calendar name."""

from __future__ import annotations

from radicale import config, pathutils

from bridge.store import Store, open_store

CALENDAR_NAME = "rendez-vous"
DEFAULT_DISPLAY_NAME = "Rendez-vous"


def store_for(configuration: config.Configuration) -> Store:
    """The store of ``[storage] db_url``, which bridge.server sets from ``--db``,
    ``$GESTAN_BRIDGE_DB`` or ``[gestan] db_url`` (bridge.config's precedence)."""
    try:
        url = configuration.get("storage", "db_url")
    except KeyError:
        url = None
    return open_store(url or None)


def calendar_owner(path: str) -> str | None:
    """The login whose Rendez-vous calendar ``path`` is (``/<login>/rendez-vous/``), or
    None for any other path."""
    parts = [p for p in pathutils.strip_path(path).split("/") if p]
    return parts[0] if len(parts) == 2 and parts[1] == CALENDAR_NAME else None
