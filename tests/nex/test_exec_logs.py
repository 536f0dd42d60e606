"""`mno instance exec` (output and exit code passed through) and `mno instance logs`
(--tail, --since, --follow until the container stops or Ctrl-C), on the real engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import IO, Any

from tests.nex.conftest import Nex, wait_for
from tests.nex.images import PORT


def _running(nex: Nex, volume: bool = True) -> str:
    nex.app(volume=volume)
    name = nex.create(nex.tenant(), "web")
    nex.tick()
    assert nex.get(name)["status"] == "running"
    return name


def _say(nex: Nex, name: str, text: str) -> None:
    """Make the container's main process print ``text`` (on stdout)."""
    (container,) = nex.containers(name)
    assert container.exec_run(["sh", "-c", f"echo {text} > /proc/1/fd/1"]).exit_code == 0


def _mno(*args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NO_COLOR="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "mno", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


class Reader:
    """Collects a pipe's bytes on a thread, so a test can wait for some text."""

    def __init__(self, pipe: IO[bytes]) -> None:
        self.data = b""
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes]) -> None:
        while chunk := pipe.read1(4096):  # type: ignore[attr-defined]
            self.data += chunk

    def has(self, text: str) -> bool:
        return text.encode() in self.data


def test_exec_passes_output_and_exit_code_through(nex: Nex, cli: Any) -> None:
    name = _running(nex)
    (container,) = nex.containers(name)
    container.exec_run(["sh", "-c", "echo kept > /www/data/note.txt"])

    script = "cat /www/data/note.txt; echo oops >&2; exit 7"
    result = cli("instance", "exec", name, "--", "sh", "-c", script)
    assert result.exit_code == 7
    assert result.stdout == "kept\n"
    assert result.stderr == "oops\n"

    ok = cli("instance", "exec", name, "--", "ls", "-a", "/www/data")
    assert ok.exit_code == 0 and "note.txt" in ok.stdout.split()

    # options of the command are the command's, even without --
    echo = cli("instance", "exec", name, "echo", "-n", "-o", "json")
    assert echo.exit_code == 0 and echo.stdout == "-o json"

    missing = cli("instance", "exec", name, "--", "no-such-command")
    assert missing.exit_code in (126, 127)


def test_exec_exit_code_of_the_process(nex: Nex) -> None:
    name = _running(nex, volume=False)
    proc = _mno("instance", "exec", name, "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 42")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 42
    assert out == b"to-out\n" and err == b"to-err\n"


def test_exec_outlives_the_engine_timeout(nex: Nex, cli: Any) -> None:
    name = _running(nex, volume=False)
    # the same local host with a 3 s engine timeout: a command quiet for longer still ends
    nex.configure(
        "apps_domain: apps.test\nhosts:\n"
        "  - {name: local, base_url: 'unix:///var/run/docker.sock', timeout: 3}\n"
    )
    result = cli("instance", "exec", name, "--", "sh", "-c", "sleep 7; echo done; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "done\n", "")


def test_exec_refusals_are_one_line_with_mno_exit_codes(nex: Nex, cli: Any) -> None:
    name = _running(nex, volume=False)
    nex.change("stop", name)
    nex.tick()
    assert nex.get(name)["status"] == "stopped"
    stopped = cli("instance", "exec", name, "--", "true")
    assert stopped.exit_code == 1
    assert stopped.stderr.count("\n") == 1 and "stopped" in stopped.stderr
    assert f"mno instance start {name}" in stopped.stderr

    unknown = cli("instance", "exec", "no-such-instance", "--", "true")
    assert unknown.exit_code == 1 and "not found" in unknown.stderr

    empty = cli("instance", "exec", name)
    assert empty.exit_code == 2

    nex.app("other", volume=False)
    staged = nex.create(nex.tenant(), "other")  # never provisioned: no container
    result = cli("instance", "exec", staged, "--", "true")
    assert result.exit_code == 1 and "no container yet" in result.stderr


def test_logs_tail_and_since(nex: Nex, cli: Any) -> None:
    name = _running(nex, volume=False)
    marks = [f"mark-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for mark in marks:
        _say(nex, name, mark)
    every = cli("instance", "logs", name)
    assert every.exit_code == 0 and all(m in every.stdout for m in marks)

    # the health checks log too: compare --tail with the whole output around it unchanged
    def tail_matches() -> bool:
        whole = cli("instance", "logs", name).stdout
        last = cli("instance", "logs", name, "--tail", "2")
        assert last.exit_code == 0 and len(last.stdout.splitlines()) == 2
        if cli("instance", "logs", name).stdout != whole:
            return False  # a line came in between: try again
        assert last.stdout.splitlines() == whole.splitlines()[-2:]
        return True

    wait_for(tail_matches, timeout=30)
    future = cli("instance", "logs", name, "--since", "2999-01-01T00:00:00Z")
    assert future.exit_code == 0 and future.stdout == ""
    recent = cli("instance", "logs", name, "--since", "1h")
    assert recent.exit_code == 0 and marks[0] in recent.stdout
    bad = cli("instance", "logs", name, "--since", "yesterday")
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_logs_follow_streams_until_the_container_stops(nex: Nex) -> None:
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope(nex.url) as s:  # no health check: nothing is logged unless said
        apps.create(
            s, "Quiet", code="quiet", stack="nex", access="any", image="mno-test/web:1", port=PORT
        )
    name = nex.create(nex.tenant(), "quiet")
    nex.tick()
    assert nex.get(name)["status"] == "running"
    # the same local host with a 2 s engine timeout: a quiet followed stream outlives it
    nex.configure(
        "apps_domain: apps.test\nhosts:\n"
        "  - {name: local, base_url: 'unix:///var/run/docker.sock', timeout: 2}\n"
    )
    proc = _mno("instance", "logs", name, "--follow", "--tail", "0")
    out = Reader(proc.stdout)  # type: ignore[arg-type]
    try:
        # --tail 0: only lines after it is attached, which a slow start delays
        ready = f"ready-{uuid.uuid4().hex[:8]}"
        wait_for(lambda: out.has(ready) or _say(nex, name, ready), timeout=60, every=1)
        time.sleep(4)  # quiet for longer than the engine timeout
        assert proc.poll() is None
        mark = f"late-{uuid.uuid4().hex[:8]}"
        _say(nex, name, mark)
        wait_for(lambda: out.has(mark), timeout=30)
        (container,) = nex.containers(name)
        container.stop(timeout=1)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None and proc.stderr.read() == b""


def test_logs_follow_ends_with_ctrl_c_and_exit_0(nex: Nex) -> None:
    name = _running(nex, volume=False)
    first = f"first-{uuid.uuid4().hex[:8]}"
    _say(nex, name, first)
    proc = _mno("instance", "logs", name, "-f")
    out = Reader(proc.stdout)  # type: ignore[arg-type]
    try:
        wait_for(lambda: out.has(first), timeout=30)  # what was there already
        mark = f"seen-{uuid.uuid4().hex[:8]}"
        _say(nex, name, mark)
        wait_for(lambda: out.has(mark), timeout=30)  # and what comes after
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert nex.get(name)["status"] == "running"  # following changed nothing
