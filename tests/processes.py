"""Helpers for tests that run real ``mno`` processes (agents, servers)."""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any


def stop(*procs: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM every process still running, then wait for each (killed after ``timeout``)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def wait_until(cond: Any, timeout: float) -> bool:
    """Whether ``cond()`` turns true within ``timeout`` seconds (checked every 0.1 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())
