"""Tenant provisioning per tier mode: docker (instances, silo network, active or
provision_failed), offboarding with final backups, and the external-mode signed callback
over real HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import counts
from tests.nex.conftest import Nex, get_page


def _tenant_status(url: str, key: str) -> tuple[str, str | None, dict[str, Any]]:
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope(url, write=False) as s:
        t = tenants.get(s, key)
        return t.status, t.status_reason, dict(t.resources or {})


def test_docker_mode_provisions_a_silo_tenant_then_offboards_it(nex: Nex, cli: Any) -> None:
    nex.configure("apps_domain: apps.test\ntiers:\n  silo: {mode: docker, apps: [web]}\n")
    nex.app()
    key = nex.tenant(tier="silo", status="pending_provision")
    result = cli.json("tenant", "provision", key)
    assert result["status"] == "provisioning"
    nex.tick()
    assert _tenant_status(nex.url, key)[0] == "active"
    name = f"web-{key}"
    view = nex.get(name)
    namespace = cli.json("host", "list")[0]["namespace"]
    assert view["status"] == "running" and view["network"] == f"mno-{namespace}-tenant-{key}"
    (container,) = nex.containers(name)
    assert view["network"] in container.attrs["NetworkSettings"]["Networks"]
    container.exec_run(["sh", "-c", "echo final > /www/data/last.txt"])

    off = cli.json("tenant", "offboard", key, "--yes")
    assert off["status"] == "offboarding"
    nex.tick()
    assert _tenant_status(nex.url, key)[0] == "offboarded"
    assert nex.client.networks.list(filters={"label": f"mno.tenant={key}"}) == []
    left = nex.client.containers.list(all=True, filters={"label": f"mno.instance={view['id']}"})
    assert left == []
    backups = list((nex.home / "backups").glob(f"{name}-*.tar"))
    assert len(backups) == 1 and Path(f"{backups[0]}.sha256").is_file()
    import tarfile

    with tarfile.open(backups[0]) as tar:
        member = tar.extractfile("data/last.txt")
        assert member is not None and member.read() == b"final\n"
    assert nex.client.volumes.list(filters={"name": view["volume"]}) == []


def test_docker_mode_failure_then_recovery(nex: Nex, cli: Any) -> None:
    nex.configure("apps_domain: apps.test\ntiers:\n  pooled: {mode: docker, apps: [web]}\n")
    nex.app(image="mno-test/web:broken", volume=False)
    key = nex.tenant(status="pending_provision")
    cli.json("tenant", "provision", key)
    nex.tick(health_start_period="0s")
    status, reason, _ = _tenant_status(nex.url, key)
    assert status == "provision_failed" and "health check failed" in (reason or "")
    # fixing the instance activates the tenant after all
    nex.change("update", f"web-{key}", image="mno-test/web:1")
    nex.tick()
    assert _tenant_status(nex.url, key)[0] == "active"
    assert get_page(nex.get(f"web-{key}")["endpoint"])[0] == 200


# -- external mode -------------------------------------------------------------------------


@pytest.fixture
def listener(nex: Nex) -> Iterator[str]:
    """The agents' HTTP listener (uvicorn) on a free loopback port."""
    from mno.agents import http

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = http.serve_in_thread(None, "127.0.0.1", port)
    deadline = time.monotonic() + 10
    while not getattr(server, "started", False) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True


def _request(url: str, secret: str, context: str, body: dict[str, Any], ts: int | None = None):
    raw = json.dumps(body).encode()
    ts = ts if ts is not None else int(time.time() * 1000)
    sig = hmac.new(secret.encode(), raw + context.encode() + str(ts).encode(), hashlib.sha256)
    req = urllib.request.Request(
        url + "/v1/callbacks/provisioning",
        data=raw,
        method="POST",
        headers={
            "content-type": "application/json",
            "x-signature": sig.hexdigest(),
            "x-timestamp": str(ts),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _requested(nex: Nex, key: str) -> tuple[str, str, str]:
    from mno import crypto

    (payload,) = [p for t, p in nex.events("tenant.provisioning_requested") if p["tenant"] == key]
    secret = payload["callbackSecret"]
    assert set(secret) == {"$encrypted"}  # never in plain text in the store
    return payload["tenantId"], payload["contextId"], crypto.decrypt(secret["$encrypted"])


def test_external_callback_activates_and_refuses_the_rest(
    nex: Nex, cli: Any, listener: str, store_url: str
) -> None:
    nex.configure("apps_domain: apps.test\ntiers:\n  silo: {mode: external}\n")
    key = nex.tenant(tier="silo", status="pending_provision")
    assert cli.json("tenant", "provision", key)["status"] == "provisioning"
    tenant_id, context, secret = _requested(nex, key)
    good = {
        "initiatorId": tenant_id,
        "type": 0,
        "data": {
            "status": 1,
            "resources": [{"type": "db", "id": "x1"}],
            "appPlaneUrl": "https://a",
        },
    }

    def refused(status: int, *args: Any, **kwargs: Any) -> None:
        before = counts(nex.url)
        code, body = _request(listener, *args, **kwargs)
        assert code == status, body
        assert counts(nex.url) == before
        assert _tenant_status(nex.url, key)[0] == "provisioning"

    refused(401, "wrong-secret", context, good)  # bad signature
    refused(401, secret, "other-context", good)  # signed for another context
    refused(401, secret, context, good, ts=int(time.time() * 1000) - 6 * 60 * 1000)  # old
    unknown = dict(good, initiatorId="00000000-0000-0000-0000-000000000001")
    refused(404, secret, context, unknown)
    refused(400, secret, context, {"nope": 1})

    code, body = _request(listener, secret, context, good)
    assert (code, body["status"]) == (200, "active")
    status, _, resources = _tenant_status(nex.url, key)
    assert status == "active" and resources["appPlaneUrl"] == "https://a"
    assert resources["resources"] == [{"type": "db", "id": "x1"}]
    before = counts(nex.url)
    code, _ = _request(listener, secret, context, good)  # the same callback again
    assert code == 409 and counts(nex.url) == before


def test_callback_listener_refuses_a_huge_body_with_413(listener: str) -> None:
    """A body over the limit is refused from its Content-Length, and a chunked one while
    it streams, before it is read into memory; a small one still reaches the handler."""
    import http.client

    from mno.agents.callbacks_http import MAX_BODY_BYTES

    host, port = listener.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/v1/callbacks/provisioning", body=b"x" * (MAX_BODY_BYTES + 1))
    resp = conn.getresponse()
    assert resp.status == 413 and b"limit" in resp.read()
    conn.close()

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"y" * (MAX_BODY_BYTES // 2)

    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/v1/callbacks/provisioning", body=chunks(), encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()

    code, _ = _request(listener, "s", "c", {"initiatorId": "x"})
    assert code == 400  # a small body reaches the handler, which refuses its shape


def test_external_callback_failure_and_expiry(nex: Nex, cli: Any, listener: str) -> None:
    from datetime import timedelta

    from mno import clock

    nex.configure("apps_domain: apps.test\ntiers:\n  pooled: {mode: external, callback_ttl: 1m}\n")
    key = nex.tenant(status="pending_provision")
    cli.json("tenant", "provision", key)
    tenant_id, context, secret = _requested(nex, key)
    failed = {"initiatorId": tenant_id, "type": 0, "data": {"status": 0, "reason": "quota"}}
    code, _ = _request(listener, secret, context, failed)
    assert code == 200
    status, reason, _ = _tenant_status(nex.url, key)
    assert status == "provision_failed" and reason == "quota"

    # a retry issues a new secret; the old one no longer matches a waiting request
    cli.json("tenant", "provision", key)
    context2 = nex.events("tenant.provisioning_requested")[-1][1]["contextId"]
    assert context2 != context
    from mno import crypto

    (payload,) = [
        p for t, p in nex.events("tenant.provisioning_requested") if p["contextId"] == context2
    ]
    secret2 = crypto.decrypt(payload["callbackSecret"]["$encrypted"])
    clock.advance(timedelta(minutes=2))
    try:
        ok = {"initiatorId": tenant_id, "type": 0, "data": {"status": 1}}
        before = counts(nex.url)
        ts = int(clock.now().timestamp() * 1000)
        code, body = _request(listener, secret2, context2, ok, ts=ts)
        assert code == 410, body
        assert counts(nex.url) == before
    finally:
        clock.set_now(None)
    assert _tenant_status(nex.url, key)[0] == "provisioning"
