"""HTTPS and IPv6 receivers: the request goes to the checked address while TLS (SNI and
certificate check) and the Host header keep the URL's name; ::1 only when allowed."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .test_delivery import add_endpoint, emit, spec_verify, statuses, tick
from .test_retry import pending


def _pem_pair(tmp: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for ``localhost`` it signed: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mno test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (tmp / "ca.pem", tmp / "server.pem", tmp / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Server:
    """A loopback receiver (HTTPS or IPv6) that records requests and the TLS SNI names."""

    def __init__(self, host: str, family: int, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[dict[str, str], bytes, str]] = []
        self.sni: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                peer = self.client_address[0]
                outer.requests.append((hdrs, self.rfile.read(n), peer))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        class Http(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.http = Http((host, 0), Handler)
        if tls is not None:

            def on_sni(sock: Any, name: str | None, ctx: Any) -> None:
                self.sni.append(name)

            tls.sni_callback = on_sni
            self.http.socket = tls.wrap_socket(self.http.socket, server_side=True)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    ca, cert, key = _pem_pair(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = Server("127.0.0.1", socket.AF_INET, ctx)
    yield server, ca
    server.close()


@pytest.fixture
def v6_server() -> Iterator[Server]:
    try:
        server = Server("::1", socket.AF_INET6)
    except OSError as exc:  # pragma: no cover - a host without IPv6 loopback
        pytest.skip(f"no IPv6 loopback: {exc}")
    yield server
    server.close()


def test_https_goes_to_the_checked_address_with_sni_and_host_kept(
    store_url: str, tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_server
    monkeypatch.setenv("MNO_WEBHOOKS_CA_BUNDLE", str(ca))
    url = f"https://localhost:{server.port}/hook"
    _, secret = add_endpoint(store_url, url, events="tenant.*")
    emit(store_url, 3)
    tick(store_url)
    assert statuses(store_url) == {"succeeded": 3}
    assert len(server.requests) == 3
    for hdrs, body, peer in server.requests:
        assert hdrs["host"] == f"localhost:{server.port}"
        assert peer == "127.0.0.1"  # the address the guard checked, not a new lookup
        assert spec_verify(secret, hdrs, body)
    # the TLS handshake named the host (the certificate was checked against it)
    assert server.sni and set(server.sni) == {"localhost"}


def test_https_with_an_untrusted_certificate_is_a_failed_attempt(
    sqlite_url: str, tls_server: tuple[Server, Path]
) -> None:
    server, _ = tls_server  # no MNO_WEBHOOKS_CA_BUNDLE: the certifi roots do not know it
    add_endpoint(sqlite_url, f"https://localhost:{server.port}/hook", events="tenant.*")
    emit(sqlite_url, 1)
    tick(sqlite_url)
    assert server.requests == []
    (row,) = pending(sqlite_url)
    assert row.last_status == "failed" and "CERTIFICATE_VERIFY_FAILED" in row.last_error


def test_https_with_a_certificate_for_another_name_is_refused(
    sqlite_url: str, tls_server: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_server
    monkeypatch.setenv("MNO_WEBHOOKS_CA_BUNDLE", str(ca))
    # 127.0.0.1 is the same server, but the certificate names only localhost
    add_endpoint(sqlite_url, f"https://127.0.0.1:{server.port}/hook", events="tenant.*")
    emit(sqlite_url, 1)
    tick(sqlite_url)
    assert server.requests == []
    (row,) = pending(sqlite_url)
    assert "CERTIFICATE_VERIFY_FAILED" in row.last_error


def test_ipv6_endpoint_on_loopback_when_allowed(
    store_url: str, v6_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNO_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.0/8,::1/128")
    url = f"http://[::1]:{v6_server.port}/hook"
    _, secret = add_endpoint(store_url, url, events="tenant.*")
    emit(store_url, 2)
    tick(store_url)
    assert statuses(store_url) == {"succeeded": 2}
    for hdrs, body, peer in v6_server.requests:
        assert hdrs["host"] == f"[::1]:{v6_server.port}"
        assert ipaddress.ip_address(peer) == ipaddress.ip_address("::1")
        assert spec_verify(secret, hdrs, body)


def test_ipv6_loopback_is_refused_when_not_allowed(
    sqlite_url: str, v6_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNO_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.0/8")  # IPv4 loopback only
    add_endpoint(sqlite_url, f"http://[::1]:{v6_server.port}/hook", events="tenant.*")
    emit(sqlite_url, 1)
    tick(sqlite_url)
    assert v6_server.requests == []
    (row,) = pending(sqlite_url)
    assert row.last_status == "failed" and "::1" in row.last_error
    from mno.store.db import session_scope
    from mno.webhooks import delivery_queue

    with session_scope(sqlite_url, write=False) as s:
        shown = delivery_queue.show(s, str(row.id))
    assert shown["attempt_log"][0]["error_class"] == "ssrf_refused"
