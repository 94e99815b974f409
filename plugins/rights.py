"""Radicale rights plugin: a user reads and writes only their own Rendez-vous calendar; a
user with the admin flag (a secretary managing agendas) every user's."""

from __future__ import annotations

from radicale import config, pathutils, rights

from plugins.common import CALENDAR_NAME, store_for


class Rights(rights.BaseRights):
    def __init__(self, configuration: config.Configuration) -> None:
        super().__init__(configuration)
        self._store = store_for(configuration)

    def authorization(self, user: str, user_groups: set, path: str) -> str:
        if not user:
            return ""
        parts = [p for p in pathutils.strip_path(path).split("/") if p]
        if not parts:
            return "R"
        if parts[0] != user:
            account = self._store.user(user)
            if account is None or not account.is_admin:
                return ""
        if len(parts) == 1:
            return "R"
        if len(parts) == 2 and parts[1] == CALENDAR_NAME:
            return "rw"
        return ""
