"""The API as separate ``mno serve`` processes sharing one store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.access.conftest import basic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_servers(store_url: str, app_key: dict[str, str], api_profile) -> Iterator[list[str]]:
    """Two ``mno serve`` processes on the test store, with a 4-request burst per key that
    refills at one request per 100 s."""
    api_profile(api={"rate_limit": 0.01, "rate_burst": 4})
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for _ in range(2):
            port = _free_port()
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mno", "serve", "--port", str(port)],
                    env=dict(os.environ),
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
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_rate_limit_holds_across_two_api_processes(two_servers, app_key):
    h = basic(app_key["key_id"], app_key["secret"])
    codes = []
    for n in range(10):
        r = httpx.get(f"{two_servers[n % 2]}/v1/dev/customers", headers=h, timeout=30)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limited"
            assert int(r.headers["retry-after"]) >= 1
    # one bucket for both processes: 4 requests in all, not 4 per process
    assert codes.count(200) == 4 and codes.count(429) == 6, codes
    assert codes[:4] == [200, 200, 200, 200], codes
