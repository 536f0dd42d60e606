"""A cached IDM answer in one ``mno serve`` process is dropped when another process, with
another ``MNO_HOME`` (as on another host: the host's access stamp file is not shared),
changes access: the wake-up on the ``access`` channel (NOTIFY on PostgreSQL, a local
datagram on SQLite) reaches every server.

The servers cache answers for an hour, so only the wake-up can change their answer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from mno.access import tokens, users
from tests.access.conftest import basic
from tests.access.test_processes import _free_port


@pytest.fixture
def bob_token(session, acme):
    with session() as s:
        return tokens.create(s, "bob@acme.io", ttl="1h").secret


@pytest.fixture
def servers(store_url: str, app_key: dict[str, str], tmp_path: Path) -> Iterator[list[str]]:
    """Two ``mno serve`` processes, each with its own home, caching answers for 1 h."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    profile = {"profiles": {"default": {"api": {"authorize_cache": "1h"}}}}
    try:
        for n in range(2):
            home = tmp_path / f"host{n}"
            home.mkdir()
            (home / "config.yaml").write_text(yaml.safe_dump(profile))
            port = _free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mno", "serve", "--port", str(port)],
                    env=dict(os.environ, MNO_HOME=str(home), MNO_DB_URL=store_url),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    pytest.fail(f"mno serve exited: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.05)
            else:
                pytest.fail("mno serve did not answer /healthz")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _allowed(url: str, app_key: dict[str, str], token: str) -> bool:
    r = httpx.post(
        f"{url}/v1/idm/authorize",
        json={"token": token, "tenant": "acme", "action": "read"},
        headers=basic(app_key["key_id"], app_key["secret"]),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return bool(r.json()["allowed"])


def _until(cond, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def test_access_change_elsewhere_drops_every_servers_cached_answer(
    servers: list[str], app_key: dict[str, str], bob_token: str, session
) -> None:
    for url in servers:  # listeners up, answers cached
        assert _until(lambda url=url: _allowed(url, app_key, bob_token))
        assert _allowed(url, app_key, bob_token)
    with session() as s:  # this process: another MNO_HOME, like another host
        users.set_status(s, "bob@acme.io", "disabled")
    for url in servers:
        assert _until(lambda url=url: not _allowed(url, app_key, bob_token)), url
    with session() as s:  # and back: a grant is seen the same way
        users.set_status(s, "bob@acme.io", "active")
    for url in servers:
        assert _until(lambda url=url: _allowed(url, app_key, bob_token)), url
