"""TLS served directly (Radicale's ``[server] ssl``, ``certificate``, ``key``): a phone's
client (the ``caldav`` package) reads and writes over https with a throwaway certificate."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import caldav
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge.config import ConfigError
from bridge.server import Server, ServerError, load_configuration
from bridge.store import open_store
from tests.conftest import sqlite_at_head


def throwaway_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gestan-bridge test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture
def tls_conf(tmp_path) -> tuple[Path, Path, str]:
    store = open_store(sqlite_at_head(tmp_path / "tls.db"))
    store.add_user("alice", "alice-secret", timezone="Europe/Paris")
    cert, key = throwaway_certificate(tmp_path)
    conf = tmp_path / "tls.conf"
    conf.write_text(f"[server]\nssl = True\ncertificate = {cert}\nkey = {key}\n"
                    f"[gestan]\ndb_url = {store.url}\n")
    return conf, cert, store.url


def test_a_phone_syncs_over_tls(tls_conf):
    conf, cert, url = tls_conf
    server = Server(load_configuration(conf), ("127.0.0.1", 0)).start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        client = caldav.DAVClient(server.url, username="alice", password="alice-secret",
                                  ssl_verify_cert=str(cert))
        [calendar] = client.principal().calendars()
        calendar.save_event(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
            "UID:tls-1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20370105T090000Z\r\n"
            "DTEND:20370105T100000Z\r\nSUMMARY:Par TLS\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
        assert [e.icalendar_component["SUMMARY"] for e in calendar.events()] == ["Par TLS"]
        assert [a.event.subject for a in open_store(url).agenda("alice")] == ["Par TLS"]
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url, timeout=10)  # an unknown certificate is not trusted
        plain = server.url.replace("https://", "http://")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(plain, timeout=10)  # no clear text on the TLS port
    finally:
        server.stop()


def test_an_unreadable_certificate_is_one_line(tls_conf, tmp_path):
    conf, cert, _ = tls_conf
    cert.unlink()
    with pytest.raises(ServerError, match=r"^Invalid filepath value for option "
                                          r"'certificate' in section 'server'.*cert\.pem"):
        Server(load_configuration(conf), ("127.0.0.1", 0))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    conf.write_text(conf.read_text().replace(str(cert), str(garbage)))
    with pytest.raises(ServerError, match="cannot use the TLS certificate and key"):
        Server(load_configuration(conf), ("127.0.0.1", 0))
    conf.write_text("[server]\nssl = maybe\n")
    with pytest.raises(ConfigError, match="'ssl'"):
        load_configuration(conf)
