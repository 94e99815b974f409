"""Radicale auth plugin: logins checked against Gestan's users table (bcrypt)."""

from __future__ import annotations

from radicale import auth, config

from plugins.common import store_for


class Auth(auth.BaseAuth):
    def __init__(self, configuration: config.Configuration) -> None:
        super().__init__(configuration)
        self._store = store_for(configuration)

    def _login_ext(self, login: str, password: str, context: auth.AuthContext) -> str:
        """The address goes with the check: failures are counted per address too."""
        user = self._store.authenticate(login, password, context.remote_addr)
        return user.login if user else ""
