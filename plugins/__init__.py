"""Radicale plugins for gestan-bridge, found by dotted ``type =`` paths in radicale.conf:

- ``plugins.storage``: each user's Rendez-vous as one CalDAV calendar, ``/<login>/rendez-vous/``
- ``plugins.auth``: logins checked against the users table (bcrypt)
- ``plugins.rights``: each user their own calendar; an admin every user's

Thin adapters over :mod:`bridge.store`: no SQL here.
"""
