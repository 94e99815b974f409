"""Radicale auth plugin: logins checked against Gestan's users table (bcrypt)."""

from __future__ import annotations

from radicale import auth, config

from plugins.common import store_for


class Auth(auth.BaseAuth):
    def __init__(self, configuration: config.Configuration) -> None:
        super().__init__(configuration)
        self._store = store_for(configuration)
        # Behind a reverse proxy every client comes from the proxy's address: the proxy's
        # X-Remote-Addr header then names the client (``[auth] remote_ip_source``).
        self._forwarded = configuration.get("auth", "remote_ip_source") == "X-Remote-Addr"

    def _login_ext(self, login: str, password: str, context: auth.AuthContext) -> str:
        """The address goes with the check: failures are counted per address too."""
        address = (context.x_remote_addr if self._forwarded else None) or context.remote_addr
        user = self._store.authenticate(login, password, address)
        return user.login if user else ""
