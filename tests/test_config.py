"""The configuration (issue 11): one schema read in one module, one precedence (command
line > environment > file > default), every setting of the file honoured or refused at start
with a one-line reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge import config
from bridge.config import ConfigError
from bridge.ical import InvalidObject, parse_object
from bridge.server import load_configuration
from bridge.store import open_store
from bridge.sync.engine import SyncOptions
from bridge.targets.secrets import token_dir
from tests.clirun import invoke

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No setting from this process's environment, and no ./radicale.conf found by chance."""
    for name in ("GESTAN_BRIDGE_DB", "GESTAN_BRIDGE_TOKEN_DIR", config.CONFIG_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_precedence_is_command_line_environment_file_default(no_env, monkeypatch):
    conf = write(no_env / "g.conf", "[gestan]\ndb_url = sqlite:///from-file.db\n")
    assert config.Settings(None).get("db_url") == "sqlite:///gestan.db"
    assert config.Settings(conf).get("db_url") == "sqlite:///from-file.db"
    monkeypatch.setenv("GESTAN_BRIDGE_DB", "sqlite:///from-env.db")
    assert config.Settings(conf).get("db_url") == "sqlite:///from-env.db"
    assert config.Settings(conf).get("db_url", "sqlite:///given.db") == "sqlite:///given.db"
    chosen = load_configuration(conf)
    assert chosen.get("storage", "db_url") == "sqlite:///from-env.db"


def test_the_file_names_the_database_of_every_command(no_env):
    """``users`` and ``agenda`` use ``[gestan] db_url`` of ./radicale.conf (or of
    $GESTAN_BRIDGE_CONFIG) like ``serve`` does, instead of an empty ./gestan.db."""
    database = no_env / "office.db"
    write(no_env / "radicale.conf", f"[gestan]\ndb_url = sqlite:///{database}\n")
    added = invoke({}, "users", "add", "zoe", "--password", "pw-zoe-1")
    assert added.returncode == 0, added.stderr
    assert open_store(f"sqlite:///{database}").user("zoe") is not None
    assert not (no_env / "gestan.db").exists()
    elsewhere = write(no_env / "other.conf", f"[gestan]\ndb_url = sqlite:///{no_env / 'o.db'}\n")
    listed = invoke({config.CONFIG_ENV: str(elsewhere)}, "users", "list")
    assert listed.returncode == 0 and "zoe" not in listed.stdout


def test_token_dir_and_sync_defaults_come_from_the_file(no_env, monkeypatch):
    conf = write(no_env / "g.conf", "[gestan]\ntoken_dir = ~/gestan-tokens\n"
                 "mass_delete_min = 3\nmass_delete_ratio = 0.25\nsync_days_back = 7\n")
    monkeypatch.setenv(config.CONFIG_ENV, str(conf))
    assert token_dir() == Path("~/gestan-tokens").expanduser()
    assert (SyncOptions().mass_delete_min, SyncOptions().mass_delete_ratio) == (3, 0.25)
    assert SyncOptions(mass_delete_min=50).mass_delete_min == 50, "the caller's wins"
    assert config.setting("sync_days_back") == 7
    monkeypatch.setenv("GESTAN_BRIDGE_TOKEN_DIR", str(no_env / "t"))
    assert token_dir() == no_env / "t", "the environment wins over the file"


@pytest.mark.parametrize("text, expected", [
    ("[storage]\nfilesystem_folder = /var/lib/radicale\n",
     "[storage] filesystem_folder is refused: the agenda is in the database"),
    ("[storage]\ndb_url = sqlite:///x.db\n", "[storage] db_url is refused: the database is "
     "set in [gestan] db_url"),
    ("[storage]\ntype = multifilesystem\n", "[storage] type is refused: must be "
     "plugins.storage"),
    ("[server]\ntype = hypercorn\n", "hypercorn is not supported"),
    ("[auth]\ntype = htpasswd\n", "[auth] type is refused: must be plugins.auth"),
    ("[auth]\nhtpasswd_filename = /etc/radicale/users\n", "another Radicale login backend"),
    ("[auth]\ncache_logins = true\n", "counts failures"),
    ("[rights]\nfile = /etc/radicale/rights\n", "[rights] file is refused"),
    ("[hook]\ntype = rabbitmq\n", "[hook] type is refused"),
    ("[sharing]\ncollection_by_token = true\n", "[sharing] collection_by_token is refused"),
    ("[server]\nmax_content_length = 0\n", "no limit"),
    ("[auth]\nremote_ip_source = X-Forwarded-For\n",
     "remote_ip_source = X-Forwarded-For is refused: must be REMOTE_ADDR or X-Remote-Addr"),
    ("[server]\nmax_connections = many\n", "max_connections"),
    ("[nowhere]\nx = 1\n", "unknown section [nowhere]"),
    ("[server]\nhost = 127.0.0.1\n", "[server] host is refused: unknown setting"),
    ("[gestan]\ndb = sqlite:///x.db\n", "[gestan] db is refused: unknown setting"),
    ("[gestan]\ndb_url = gestan.db\n", "not a database URL"),
    ("[gestan]\nmass_delete_ratio = 2\n", "mass_delete_ratio"),
    ("[gestan]\nsync_days_back = -1\n", "sync_days_back"),
    ("just text\n", "is not an INI file"),
    ("[server]\nhosts = a\n[server]\nhosts = b\n", "is not an INI file"),
])
def test_a_setting_that_cannot_be_honoured_is_refused_in_one_line(no_env, text, expected):
    conf = write(no_env / "bad.conf", text)
    with pytest.raises(ConfigError) as refused:
        load_configuration(conf)
    message = str(refused.value)
    assert expected in message and "\n" not in message
    served = invoke({}, "serve", "--config", str(conf))
    assert served.returncode == 1 and served.stdout == ""
    assert served.stderr.count("\n") == 1 and expected in served.stderr
    assert not (no_env / "gestan.db").exists(), "nothing created"


def test_several_refusals_are_named_in_one_line(no_env):
    conf = write(no_env / "bad.conf", "[storage]\nfilesystem_folder = /x\n[auth]\n"
                 "ldap_uri = ldap://x\n")
    with pytest.raises(ConfigError, match=r"filesystem_folder .*\(and 1 more refused\)"):
        load_configuration(conf)


def test_the_shipped_file_and_radicale_settings_we_honour_load(no_env):
    shipped = load_configuration(REPO / "radicale.conf")
    assert shipped.get("server", "hosts") == [("127.0.0.1", 5232)]
    assert shipped.get("server", "max_content_length") == 1_000_000
    honoured = write(no_env / "ok.conf", "[server]\ntype = builtin\nhosts = 127.0.0.1:6000\n"
                     "max_connections = 3\ntimeout = 7\n[auth]\ntype = plugins.auth\n"
                     "delay = 0.5\nrealm = Gestan\n[web]\ntype = none\n[logging]\n"
                     "level = warning\n[headers]\nX-Frame-Options = DENY\n[gestan]\n"
                     f"db_url = sqlite:///{no_env / 'g.db'}\n")
    loaded = load_configuration(honoured)
    assert [loaded.get(*k) for k in (("server", "hosts"), ("server", "max_connections"),
                                     ("server", "timeout"), ("auth", "realm"),
                                     ("web", "type"), ("logging", "level"))] == [
        [("127.0.0.1", 6000)], 3, 7.0, "Gestan", "none", "warning"]
    assert loaded.get("storage", "db_url") == f"sqlite:///{no_env / 'g.db'}"
    assert loaded.get("server", "max_resource_size") == 800_000, "80 % of the body limit"
    moved = load_configuration(honoured, host="127.0.0.2", port=6001)
    assert moved.get("server", "hosts") == [("127.0.0.2", 6001)], "the command line wins"


def test_one_body_limit_for_the_parser_too(no_env, monkeypatch):
    event = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:big\r\n"
             "DTSTART:20270101T100000Z\r\nDTEND:20270101T110000Z\r\nSUMMARY:s\r\n"
             f"DESCRIPTION:{'x' * 6000}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()
    assert parse_object(event, "Europe/Paris").uid == "big", "under the default limit"
    conf = write(no_env / "small.conf", "[server]\nmax_content_length = 5000\n")
    monkeypatch.setenv(config.CONFIG_ENV, str(conf))
    with pytest.raises(InvalidObject) as refused:
        parse_object(event, "Europe/Paris")
    assert refused.value.status == 413 and "larger than 5000 bytes" in refused.value.reason


def test_the_environment_is_read_in_bridge_config_only():
    """Every variable keeps its name and meaning, read through bridge.config.env (the
    typer ``envvar=`` of --db stays: the command line beats the environment there too)."""
    readers = re.compile(r"os\.environ(\.get\(|\[)|getenv\(")  # one variable read
    # google_auth switches oauthlib's own OAUTHLIB_INSECURE_TRANSPORT on for a loopback
    # endpoint (``name``): a library's switch set and put back, not a setting read
    switch = re.compile(r"os\.environ(\.get\(name\)|\[name\])")
    found = []
    for path in sorted([*(REPO / "bridge").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]):
        if path.name == "config.py" and path.parent.name == "bridge":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if readers.search(line) and not (path.name == "google_auth.py"
                                             and switch.search(line)):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []
    with pytest.raises(KeyError):
        config.env("GESTAN_BRIDGE_NOT_A_SETTING")
