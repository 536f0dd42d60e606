"""``mno`` as a real process: a closed pipe on stdout, and ``mno serve`` announcing itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

MNO = [sys.executable, "-m", "mno"]


def _pipe_to_head(*args: str) -> tuple[int, bytes, bytes]:
    """Run ``mno ARGS | head -1`` with real pipes; (mno's exit code, head's output, mno's
    stderr)."""
    writer = subprocess.Popen(
        [*MNO, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ)
    )
    head = subprocess.Popen(["head", "-1"], stdin=writer.stdout, stdout=subprocess.PIPE)
    assert writer.stdout is not None and writer.stderr is not None
    writer.stdout.close()  # head holds the only reading end
    first, _ = head.communicate(timeout=60)
    err = writer.stderr.read()
    code = writer.wait(timeout=60)
    return code, first, err


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("fmt", ["table", "yaml"])
def test_tenant_list_into_head_exits_0_without_a_traceback(store_url, session, fmt) -> None:
    from mno.store.models.tenancy import Tenant

    with session() as s:  # far more output than a pipe holds: writing fails once head exits
        s.add_all(Tenant(key=f"t{i:05d}", name=f"Tenant number {i}" * 3) for i in range(3000))
    code, first, err = _pipe_to_head("tenant", "list", "--limit", "3000", "-o", fmt)
    assert first.startswith(b"KEY" if fmt == "table" else b"- "), first
    assert code == 0, err
    assert err == b""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_prints_its_address_on_stderr(sqlite_url) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [*MNO, "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert line.strip() == f"listening on http://127.0.0.1:{port} (docs at /docs)"
        # the address is live once announced
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not answer"
                time.sleep(0.05)
        assert answer.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


def test_serve_on_a_taken_port_is_one_line_and_exit_3(sqlite_url) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [*MNO, "serve", "--port", str(port)],
            capture_output=True,
            env=dict(os.environ),
            timeout=60,
        )
    assert proc.returncode == 3, proc.stderr
    err = proc.stderr.decode()
    assert err.startswith(f"Error: cannot listen on 127.0.0.1:{port}"), err
    assert len(err.strip().splitlines()) == 1
