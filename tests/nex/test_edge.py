"""The HTTPS edge through a real Caddy on loopback: routes from the store, Caddy's internal
CA, operator certificates kept sealed and rotated without a restart, and a real instance
reached over HTTPS."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from mno.errors import BadInput
from tests.conftest import Cli, counts
from tests.nex.conftest import Nex, wait_for

pytestmark = pytest.mark.skipif(
    not any(Path(d, "caddy").exists() for d in os.environ.get("PATH", "").split(":")),
    reason="caddy is not installed (scripts/test installs it)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Edge:
    proc: Any
    https_port: int
    data_dir: Path
    config: Any

    def root_ca(self) -> str:
        return (self.data_dir / "pki/authorities/local/root.crt").read_text()


def edge_yaml(data_dir: Path, tls: str = "internal") -> str:
    return (
        "apps_domain: apps.test\n"
        "edge:\n"
        f"  admin: http://127.0.0.1:{free_port()}\n"
        "  listen: 127.0.0.1\n"
        f"  https_port: {free_port()}\n"
        f"  http_port: {free_port()}\n"
        f"  tls: {tls}\n"
        f"  data_dir: {data_dir}\n"
    )


@pytest.fixture
def edge_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Edge]:
    """A real Caddy started as `mno edge run` starts it, admin and HTTPS on free ports."""
    from mno import platform
    from mno.nex import edge

    data_dir = tmp_path / "edge"
    text = edge_yaml(data_dir)
    config_path = tmp_path / "platform.yaml"
    config_path.write_text(text)
    monkeypatch.setenv("MNO_CONFIG", str(config_path))
    platform.clear_cache()
    config = platform.load()
    proc = edge.launch(config, log=tmp_path / "caddy.log")
    try:
        edge.wait_admin(config, proc=proc)
        assert config.edge is not None
        yield Edge(proc, config.edge.https_port, data_dir, config)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except Exception:
            proc.kill()
        platform.clear_cache()


def https_get(port: int, host: str, ca_pem: str, path: str = "/") -> tuple[int, str, str]:
    """GET https://host/path from the edge on 127.0.0.1:port with SNI and Host set to
    ``host`` and only ``ca_pem`` trusted: (status, body, SHA-256 of the served leaf)."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=5)
    conn.sock = ctx.wrap_socket(raw, server_hostname=host)
    try:
        der = conn.sock.getpeercert(binary_form=True) or b""
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(), hashlib.sha256(der).hexdigest()
    finally:
        conn.close()


def answer(port: int, host: str, ca_pem: str) -> tuple[int, str, str] | None:
    """The edge's answer, or None while the handshake fails (no certificate yet/any more)."""
    try:
        return https_get(port, host, ca_pem)
    except (ssl.SSLError, ConnectionError, OSError):
        return None


@pytest.fixture
def local_app() -> Iterator[int]:
    """A plain HTTP server on loopback standing in for an instance's published port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = f"hello from local, host {self.headers['Host']}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def recorded_instance(url: str, endpoint: str, domains: list[str]) -> str:
    """A tenant, a Nex app and an instance the provisioner would have started at
    ``endpoint`` (the route unit needs no container)."""
    from mno.nex import instances
    from mno.store.db import session_scope
    from mno.store.models.nex import Instance
    from mno.tenancy import apps, tenants

    with session_scope(url) as s:
        tenants.create(s, "acme", status="active")
        apps.create(s, "Web", code="web", stack="nex", access="any", image="x:1", port=8080)
        inst = instances.create(s, "acme", "web", domains=domains)
        row = s.get(Instance, inst.id)
        assert row is not None
        row.status, row.endpoint = "running", endpoint
        return inst.name


# -- a test CA for operator certificates ---------------------------------------------------


def make_ca() -> tuple[Any, Any, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mno test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key, cert.public_bytes(serialization.Encoding.PEM).decode()


def issue(
    ca: tuple[Any, Any, str], names: list[str], days: int = 10, hours_ago: int = 1
) -> tuple[str, str, str]:
    """A leaf for ``names`` signed by the test CA: (cert PEM, key PEM, SHA-256 of its DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_cert, ca_key, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=hours_ago))
        .not_valid_after(now + timedelta(days=days) - timedelta(hours=hours_ago))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(ca_key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem,
        (hashlib.sha256(der).hexdigest()),
    )


# -- tests ---------------------------------------------------------------------------------


def test_https_routes_generated_and_custom_domains_until_removed(
    edge_proc: Edge, sqlite_url: str, local_app: int
) -> None:
    from mno.nex import edge, instances
    from mno.store.db import session_scope
    from mno.store.models.nex import Instance

    name = recorded_instance(sqlite_url, f"http://127.0.0.1:{local_app}", ["crm.acme.example"])
    first = edge.sync(sqlite_url)
    assert first.changed and (first.routes, first.hosts) == (1, 2)
    assert edge.sync(sqlite_url).changed is False  # nothing new: nothing loaded

    port = edge_proc.https_port
    for host in (f"{name}.apps.test", "crm.acme.example"):
        # Caddy's internal CA issues the certificate right after the load
        got = wait_for(lambda h=host: answer(port, h, edge_proc.root_ca()))
        assert got[:2] == (200, f"hello from local, host {host}\n")
    other = answer(port, "other.apps.test", edge_proc.root_ca())
    assert other is None or other[0] == 404

    status = edge.status(sqlite_url)
    assert status.reachable and status.in_sync
    # a Caddy that lost its config (restarted empty) is filled again by the next sync
    assert edge_proc.config.edge is not None
    edge.Admin(edge_proc.config.edge).load(edge.build_config(edge_proc.config.edge, [], []))
    assert edge.status(sqlite_url).in_sync is False
    assert edge.sync(sqlite_url).changed and edge.status(sqlite_url).in_sync
    assert https_get(port, "crm.acme.example", edge_proc.root_ca())[0] == 200
    assert status.routes == [
        {
            "instance": name,
            "hosts": [f"{name}.apps.test", "crm.acme.example"],
            "upstream": f"127.0.0.1:{local_app}",
        }
    ]

    with session_scope(sqlite_url) as s:
        instances.remove_domain(s, name, "crm.acme.example")
    assert edge.status(sqlite_url).in_sync is False
    assert edge.sync(sqlite_url).changed
    gone = answer(port, "crm.acme.example", edge_proc.root_ca())
    assert gone is None or gone[0] == 404
    assert https_get(port, f"{name}.apps.test", edge_proc.root_ca())[0] == 200

    # a terminated instance stops routing
    with session_scope(sqlite_url) as s:
        row = s.exec(sa.select(Instance).where(Instance.name == name)).scalars().one()
        row.status, row.live_name, row.endpoint = "terminated", None, None
    result = edge.sync(sqlite_url)
    assert result.changed and result.routes == 0
    gone = answer(port, f"{name}.apps.test", edge_proc.root_ca())
    assert gone is None or gone[0] == 404
    assert edge_proc.proc.poll() is None


def test_manual_certificate_is_served_and_rotated_without_restart(
    edge_proc: Edge, sqlite_url: str, local_app: int, tmp_path: Path, cli: Cli
) -> None:
    from mno.nex import edge

    recorded_instance(sqlite_url, f"http://127.0.0.1:{local_app}", ["shop.acme.example"])
    ca = make_ca()
    cert1, key1, fp1 = issue(ca, ["shop.acme.example"])
    cert2, key2, fp2 = issue(ca, ["shop.acme.example", "www.shop.acme.example"], days=20)
    (tmp_path / "c1.pem").write_text(cert1)
    (tmp_path / "k1.pem").write_text(key1)
    (tmp_path / "c2.pem").write_text(cert2)
    (tmp_path / "k2.pem").write_text(key2)

    out = cli.json(
        "instance", "domain", "cert", "set", "shop.acme.example",
        "--cert", str(tmp_path / "c1.pem"), "--key", str(tmp_path / "k1.pem"),
    )  # fmt: skip
    assert out["fingerprint"] == fp1 and out["names"] == ["shop.acme.example"]
    assert edge.sync(sqlite_url).certificates == 1
    pid = edge_proc.proc.pid
    status, body, served = wait_for(
        lambda: answer(edge_proc.https_port, "shop.acme.example", ca[2])
    )
    assert (status, served) == (200, fp1) and "shop.acme.example" in body

    result = cli(
        "instance", "domain", "cert", "set", "shop.acme.example",
        "--cert", str(tmp_path / "c2.pem"), "--key", str(tmp_path / "k2.pem"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "PRIVATE KEY" not in result.output
    assert edge.sync(sqlite_url).changed
    served2 = wait_for(
        lambda: (a := answer(edge_proc.https_port, "shop.acme.example", ca[2])) and a[2] == fp2
    )
    assert served2
    # the same Caddy process serves the new certificate: no restart
    assert edge_proc.proc.poll() is None and edge_proc.proc.pid == pid

    shown = cli("edge", "status", "-o", "json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["in_sync"] is True
    assert "PRIVATE KEY" not in shown.stdout + shown.stderr
    listed = cli.json("instance", "domain", "cert", "list")
    assert [(c["domain"], c["fingerprint"]) for c in listed] == [("shop.acme.example", fp2)]

    # without the certificate the domain falls back to the internal CA
    assert cli("instance", "domain", "cert", "remove", "shop.acme.example", "--yes").exit_code == 0
    assert edge.sync(sqlite_url).certificates == 0
    wait_for(lambda: answer(edge_proc.https_port, "shop.acme.example", edge_proc.root_ca()))


def test_certificate_key_is_sealed_and_checked(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography.fernet import Fernet

    from mno.nex import certs
    from mno.store.db import session_scope

    monkeypatch.setenv("MNO_MASTER_KEY", Fernet.generate_key().decode())
    ca = make_ca()
    cert, key, fp = issue(ca, ["*.apps.example.com"])
    _, other_key, _ = issue(ca, ["a.example.com"])
    with session_scope(store_url):
        pass  # the store exists
    before = counts(store_url)
    with session_scope(store_url) as s:
        with pytest.raises(BadInput, match="does not belong"):
            certs.set_cert(s, "x.apps.example.com", cert, other_key)
        with pytest.raises(BadInput, match="does not cover"):
            certs.set_cert(s, "a.b.apps.example.com", cert, key)
        with pytest.raises(BadInput, match="no PEM certificate"):
            certs.set_cert(s, "x.apps.example.com", "not a cert", key)
        with pytest.raises(BadInput, match="no PEM private key"):
            certs.set_cert(s, "x.apps.example.com", cert, "not a key")
        expired, expired_key, _ = issue(ca, ["old.example.com"], days=1, hours_ago=48)
        with pytest.raises(BadInput, match="expired"):
            certs.set_cert(s, "old.example.com", expired, expired_key)
    assert counts(store_url) == before  # nothing written

    with session_scope(store_url) as s:
        view = certs.set_cert(s, "*.apps.example.com", cert, key)
    assert view["fingerprint"] == fp and view["names"] == ["*.apps.example.com"]
    cert2, key2, fp2 = issue(ca, ["*.apps.example.com"])
    with session_scope(store_url) as s:
        assert certs.set_cert(s, "*.apps.example.com", cert2, key2)["fingerprint"] == fp2
    assert counts(store_url) == (before[0] + 2, before[1] + 2)

    from mno.store import db

    with db.get_engine(store_url).connect() as conn:
        stored = json.dumps(
            [list(r) for r in conn.execute(sa.text("SELECT * FROM nex_domain_cert"))], default=str
        )
        trail = json.dumps(
            [list(r) for r in conn.execute(sa.text("SELECT * FROM audit_entry"))], default=str
        ) + json.dumps(
            [list(r) for r in conn.execute(sa.text("SELECT * FROM outbox_event"))], default=str
        )
    for secret_body in (key.split("\n")[1], key2.split("\n")[1]):
        assert secret_body not in stored and secret_body not in trail
    assert "PRIVATE KEY" not in stored
    assert "PRIVATE KEY" not in trail and "certificate.set" in trail
    with session_scope(store_url, write=False) as s:
        (loaded,) = certs.load_all(s)
    assert "PRIVATE KEY" in loaded.key_pem and loaded.fingerprint == fp2
    assert certs.covers("*.apps.example.com", "blog.apps.example.com")
    assert not certs.covers("*.apps.example.com", "a.blog.apps.example.com")


def test_tls_modes_shape_the_automation(tmp_path: Path) -> None:
    from mno import platform
    from mno.nex import certs, edge

    route = edge.Route("web-acme", ["web-acme.apps.example.com", "crm.acme.com"], "10.0.0.5:3210")
    manual = certs.Loaded("crm.acme.com", ["crm.acme.com"], "CERT", "KEY", "f")

    def cfg(extra: str) -> platform.EdgeConfig:
        conf = platform.parse(f"edge:\n  data_dir: {tmp_path}\n{extra}")
        assert conf.edge is not None
        return conf.edge

    acme = edge.build_config(cfg("  acme_email: ops@example.com\n"), [route], [manual])
    policy = acme["apps"]["tls"]["automation"]["policies"]
    assert policy == [
        {
            "subjects": ["web-acme.apps.example.com"],
            "issuers": [{"module": "acme", "email": "ops@example.com"}],
        }
    ]
    server = acme["apps"]["http"]["servers"]["mno"]
    assert server["automatic_https"]["skip_certificates"] == ["crm.acme.com"]
    assert server["listen"] == [":443"] and acme["admin"]["config"] == {"persist": False}
    assert acme["apps"]["tls"]["certificates"]["load_pem"][0]["key"] == "KEY"
    assert server["routes"][0]["handle"][0]["upstreams"] == [{"dial": "10.0.0.5:3210"}]

    only_manual = edge.build_config(cfg("  tls: manual\n"), [route], [manual])
    assert "automation" not in only_manual["apps"]["tls"]
    assert only_manual["apps"]["http"]["servers"]["mno"]["automatic_https"][
        "skip_certificates"
    ] == ["crm.acme.com", "web-acme.apps.example.com"]

    with pytest.raises(BadInput, match="edge.tls"):
        platform.parse("edge:\n  tls: letsencrypt\n")
    with pytest.raises(BadInput, match="no edge section"):
        edge.edge_config(platform.parse("apps_domain: a.example\n"))


@pytest.mark.docker
def test_real_instance_over_https_follows_its_endpoint(nex: Nex, tmp_path: Path) -> None:
    """A container from the provisioner, routed by the edge agent's tick; the route
    follows the instance's endpoint and goes when the instance is terminated."""
    from mno import platform
    from mno.agents import edge as edge_agent
    from mno.agents.base import TickContext
    from mno.nex import edge

    nex.configure(edge_yaml(tmp_path / "edge"))
    config = platform.load()
    assert config.edge is not None
    proc = edge.launch(config, log=tmp_path / "caddy.log")
    try:
        edge.wait_admin(config, proc=proc)
        ca = lambda: (tmp_path / "edge/pki/authorities/local/root.crt").read_text()  # noqa: E731
        tenant = nex.tenant()
        nex.app(volume=False)
        name = nex.create(tenant, "web", domains=[f"{tenant}.customer.example"])
        nex.tick()
        assert nex.get(name)["status"] == "running"
        assert nex.get(name)["url"] == f"https://{name}.apps.test"  # the edge serves HTTPS

        def edge_tick() -> Any:
            return edge_agent.tick(TickContext(agent="edge", db_url=nex.url))

        assert edge_tick().details["loaded"] == 1
        assert edge_tick().details["loaded"] == 0
        port = config.edge.https_port
        for host in (f"{name}.apps.test", f"{tenant}.customer.example"):
            got = wait_for(lambda h=host: answer(port, h, ca()))
            assert got[:2] == (200, "hello from version 1\n")

        # the container is replaced (new host port): the next tick routes to it
        old = nex.get(name)["endpoint"]
        nex.change("update", name, image="mno-test/web:2")
        nex.tick()
        assert nex.get(name)["endpoint"] != old
        assert edge_tick().details["loaded"] == 1
        got = wait_for(lambda: (a := answer(port, f"{name}.apps.test", ca())) and a[0] == 200 and a)
        assert got[1] == "hello from version 2\n"

        nex.change("terminate", name)
        nex.tick()
        tick = edge_tick()
        assert (tick.details["loaded"], tick.details["routes"]) == (1, 0)
        gone = answer(port, f"{name}.apps.test", ca())
        assert gone is None or gone[0] == 404
    finally:
        proc.terminate()
        proc.wait(10)


def test_edge_run_starts_caddy_loads_routes_and_stops_it(
    tmp_path: Path, sqlite_url: str, local_app: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mno edge run` as an operator starts it: Caddy comes up with the store's routes,
    and a SIGTERM stops both."""
    import subprocess
    import sys

    from mno import platform
    from mno.nex import edge

    config_path = tmp_path / "platform.yaml"
    config_path.write_text(edge_yaml(tmp_path / "edge"))
    monkeypatch.setenv("MNO_CONFIG", str(config_path))
    platform.clear_cache()
    name = recorded_instance(sqlite_url, f"http://127.0.0.1:{local_app}", [])
    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mno", "edge", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        ready = wait_for(lambda: (st := edge.status(sqlite_url)).in_sync and st, timeout=30)
        assert [r["instance"] for r in ready.routes] == [name]
        ca = (tmp_path / "edge/pki/authorities/local/root.crt").read_text
        got = wait_for(lambda: answer(ready_port(config_path), f"{name}.apps.test", ca()))
        assert got[0] == 200
        initial = json.loads((tmp_path / "edge/caddy-initial.json").read_text())
        assert initial["apps"]["http"]["servers"]["mno"]["routes"][0]["@id"] == "mno-not-found"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert b"Caddy is running" in err
    assert edge.status(sqlite_url).reachable is False  # Caddy stopped with it


def ready_port(config_path: Path) -> int:
    from mno import platform

    config = platform.parse(config_path.read_text())
    assert config.edge is not None
    return config.edge.https_port
