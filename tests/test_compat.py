"""The canary: what bridge/radicale_compat.py (and the settings table of bridge/config.py)
assume of Radicale's internals still holds. A Radicale upgrade that breaks an assumption
fails here first, naming it, instead of somewhere in a phone's sync."""

from __future__ import annotations

import hashlib
import inspect
import tomllib
from pathlib import Path

import pytest
import radicale
import radicale.app.put
import radicale.config
import radicale.server
import radicale.storage
from radicale import item as radicale_item

from bridge import config
from bridge import radicale_compat as compat
from bridge.caldav_app import GestanApplication
from bridge.server import load_configuration

REPO = Path(__file__).resolve().parent.parent
ICS = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:u1\r\n"
       "DTSTART:20270101T100000Z\r\nDTEND:20270101T110000Z\r\nSUMMARY:s\r\nEND:VEVENT\r\n"
       "END:VCALENDAR\r\n")
# The sources copied or subclassed by bridge/radicale_compat.py (ServeLoop is serve()'s
# loop; bind() builds these classes), and Radicale's PUT, whose answers bridge/caldav_put.py
# gives: a change means reading them again.
SOURCES = {
    radicale.app.put.ApplicationPartPut.do_PUT: "0c0d7e2fff13a7f5",
    radicale.server.serve: "ee1d0fa5bdfe5a1b",
    radicale.server.ParallelHTTPServer: "4a12893e2afab94d",
    radicale.server.ParallelHTTPSServer: "c4c7e7ed2f2188b5",
    radicale.server.RequestHandler: "aac5e22b349279a1",
}


def test_radicale_is_the_version_tested_and_pinned_exactly():
    assert radicale.VERSION == compat.RADICALE_VERSION
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "dependencies"]
    assert f"radicale=={compat.RADICALE_VERSION}" in dependencies


@pytest.mark.parametrize("method", compat.OVERRIDDEN)
def test_request_methods_take_the_parameters_our_overrides_pass(method):
    expected = ["self", *compat.REQUEST_PARAMETERS]
    assert list(inspect.signature(getattr(radicale.Application, method)).parameters) \
        == expected
    assert list(inspect.signature(getattr(GestanApplication, method)).parameters) == expected


def test_the_application_keeps_its_rights_and_encoding_where_we_read_them(tmp_path):
    app = GestanApplication(load_configuration(None, f"sqlite:///{tmp_path / 'c.db'}"))
    assert isinstance(compat.rights(app), radicale.rights.BaseRights)
    assert isinstance(compat.storage(app), radicale.storage.BaseStorage)
    assert compat.encoding(app) == "utf-8"
    status, headers, body, _ = compat.webdav_error(app, 409, "C:no-uid-conflict", {})
    assert status == 409 and b"no-uid-conflict" in body


def test_item_keeps_the_attributes_init_item_sets_and_its_properties_read_them():
    built = radicale_item.Item(collection_path="alice/rendez-vous", text=ICS)
    assert set(vars(built)) == compat.ITEM_ATTRIBUTES

    class Collection:
        path = "alice/rendez-vous"

    bare = radicale_item.Item.__new__(radicale_item.Item)
    compat.init_item(bare, collection=Collection(), href="u1.ics", text=ICS,
                     etag='"e1"', uid="u1")
    assert (bare.etag, bare.uid, bare.name, bare.component_name) == (
        '"e1"', "u1", "VCALENDAR", "VEVENT")
    assert bare.serialize() == ICS and bare.vobject_item.name == "VCALENDAR"
    set_by_us = {name for name in vars(bare)}
    assert set_by_us == compat.ITEM_ATTRIBUTES - {"last_modified", "_time_range"}, \
        "the two left are properties of plugins.storage.StoredItem"


@pytest.mark.parametrize("source", list(SOURCES), ids=lambda s: s.__qualname__)
def test_the_server_code_we_build_on_is_unchanged(source):
    digest = hashlib.sha256(inspect.getsource(source).encode()).hexdigest()[:16]
    assert digest == SOURCES[source], f"{source.__qualname__} changed: review radicale_compat"


def test_the_server_classes_have_the_shape_the_serve_loop_uses():
    parameters = list(inspect.signature(radicale.server.ParallelHTTPServer.__init__).parameters)
    assert parameters == ["self", "configuration", "family", "address",
                          "RequestHandlerClass"]
    assert issubclass(radicale.server.ParallelHTTPSServer, radicale.server.ParallelHTTPServer)
    configuration = compat.internal_server(load_configuration(None, "sqlite://"))
    [server] = compat.bind(configuration, ("127.0.0.1", 0))
    try:
        assert server.worker_sockets == set()
    finally:
        server.server_close()
    assert configuration.get("server", "_internal_server") is True


def _schema_options() -> set[tuple[str, str]]:
    return {(section, option)
            for section, options in radicale.config.DEFAULT_CONFIG_SCHEMA.items()
            for option in options if not option.startswith("_")}


def test_every_radicale_setting_is_honoured_or_refused_by_name():
    """A setting added by a new Radicale must be classified in bridge/config.py."""
    unclassified = []
    for section, option in _schema_options():
        honoured = config.HONOURED.get(section, frozenset())
        known = (option == "type" and section in config.TYPES
                 or honoured == config.ALL or option in honoured
                 or option in config.REFUSED.get(section, {})
                 or option.startswith(config.REFUSED_PREFIXES.get(section, ()))
                 or section in config.REFUSED_SECTIONS)
        if not known:
            unclassified.append(f"[{section}] {option}")
    assert unclassified == []


def test_every_setting_named_in_our_tables_exists_in_radicale():
    schema = _schema_options()
    named = {(s, o) for s, options in config.HONOURED.items() if options != config.ALL
             for o in options}
    named |= {(s, o) for s, options in config.REFUSED.items() for o in options
              if (s, o) != ("storage", "db_url")}  # ours, refused to point at [gestan]
    named |= {(s, "type") for s in config.TYPES}
    assert named - schema == set()
    assert set(config.HONOURED) | set(config.TYPES) | set(config.REFUSED_SECTIONS) >= {
        s for s, _ in schema}


def test_the_remote_ip_sources_we_accept_are_radicales():
    """[auth] remote_ip_source: the values Radicale knows (plugins/auth.py reads the header
    for the second), no others."""
    from radicale import auth

    assert tuple(auth.REMOTE_ADDR_SOURCE) == config.REMOTE_IP_SOURCES
    schema = radicale.config.DEFAULT_CONFIG_SCHEMA["auth"]["remote_ip_source"]
    assert schema["value"] == "REMOTE_ADDR" and schema["internal"] == auth.REMOTE_ADDR_SOURCE


# (text, what both refuse or accept): [server] max_vevent_rrule_occurrence as Radicale read it
LIMIT_CASES = {
    "count over": ("RRULE:FREQ=DAILY;COUNT=20000", True),
    "count at": ("RRULE:FREQ=DAILY;COUNT=10000", False),
    "until over": ("RRULE:FREQ=DAILY;UNTIL=20550101T000000Z", True),
    "until under": ("RRULE:FREQ=WEEKLY;UNTIL=20550101T000000Z", False),
    "weekly until over": ("RRULE:FREQ=WEEKLY;UNTIL=22300101T000000Z", True),
}


@pytest.mark.parametrize("name", sorted(LIMIT_CASES))
def test_our_put_refuses_the_rules_radicales_put_refused(name):
    """bridge/caldav_put.py writes PUTs without Radicale's PUT: its occurrence limit is
    checked by us, and must refuse exactly what Radicale's check refuses."""
    from bridge.caldav_put import check_limits
    from bridge.ical import InvalidObject, parse_object

    rule, refused = LIMIT_CASES[name]
    text = ICS.replace("SUMMARY:s", f"SUMMARY:s\r\n{rule}")
    assert (compat.radicale_refuses(text, 10_000) is not None) is refused
    parsed = parse_object(text.encode(), "Europe/Paris")
    try:
        check_limits(parsed, text, 0, 10_000)
        ours = False
    except InvalidObject as exc:
        ours = True
        assert "max_vevent_rrule_occurrence" in exc.reason
    assert ours is refused
