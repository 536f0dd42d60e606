"""``--watch [--interval 2s]`` on ``instance show``, ``agents status`` and ``webhook
deliveries list``: render again until Ctrl-C (exit 0); NDJSON with ``-o json``; blank
lines between renders off a terminal; the screen cleared between renders on one."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import yaml

MNO = [sys.executable, "-m", "mno"]
pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def test_json_watch_prints_one_document_per_line(cli: Any, store_url: str, monkeypatch) -> None:
    monkeypatch.setenv("MNO_WATCH_COUNT", "3")
    result = cli("webhook", "deliveries", "list", "--watch", "--interval", "10ms", "-o", "json")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [json.loads(line) for line in lines] == [[], [], []]


def test_table_watch_off_a_terminal_separates_renders_by_a_blank_line(
    cli: Any, store_url: str, monkeypatch
) -> None:
    monkeypatch.setenv("MNO_WATCH_COUNT", "2")
    once = cli("agents", "status")
    assert once.exit_code == 0, once.stderr
    watched = cli("agents", "status", "-w", "--interval", "10ms")
    assert watched.exit_code == 0, watched.stderr
    assert watched.stdout == once.stdout + "\n" + once.stdout
    assert "\x1b" not in watched.stdout


def test_yaml_watch_is_a_stream_of_documents(cli: Any, store_url: str, monkeypatch) -> None:
    monkeypatch.setenv("MNO_WATCH_COUNT", "2")
    result = cli("agents", "status", "--watch", "--interval", "10ms", "-o", "yaml")
    assert result.exit_code == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert len(docs) == 2 and docs[0]["agents"] == docs[1]["agents"]


def test_a_bad_interval_is_refused_before_anything_is_shown(cli: Any, store_url: str) -> None:
    for bad in ("0s", "soon"):
        result = cli("agents", "status", "--watch", "--interval", bad)
        assert result.exit_code == 2, (bad, result.stdout)
        assert result.stdout == ""
        assert result.stderr.startswith("Error: ")


def test_watch_ends_on_an_error_like_a_single_render(cli: Any, store_url: str, monkeypatch) -> None:
    monkeypatch.setenv("MNO_WATCH_COUNT", "3")
    result = cli("instance", "show", "nope", "--watch", "--interval", "10ms")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: instance nope not found (see `mno instance list`)"
    ]


def test_watch_and_interval_are_in_help_and_the_count_is_not(cli: Any, store_url: str) -> None:
    for path in (("instance", "show"), ("agents", "status"), ("webhook", "deliveries", "list")):
        text = cli(*path, "-h").stdout
        assert "--watch" in text and "--interval" in text, path
        assert "WATCH_COUNT" not in text


def test_ctrl_c_ends_a_watch_with_exit_0(store_url: str) -> None:
    proc = subprocess.Popen(
        [*MNO, "webhook", "deliveries", "list", "--watch", "--interval", "50ms", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline()) == []
    assert json.loads(proc.stdout.readline()) == []  # it renders again by itself
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"Aborted" not in err
    assert all(json.loads(line) == [] for line in out.splitlines())


def test_on_a_terminal_the_screen_is_cleared_between_renders(store_url: str) -> None:
    leader, follower = pty.openpty()
    env = {**os.environ, "MNO_WATCH_COUNT": "2", "TERM": "xterm"}
    proc = subprocess.Popen(
        [*MNO, "agents", "status", "--watch", "--interval", "10ms"],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the process closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    assert proc.wait(timeout=30) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert screen.count("\x1b[2J") == 2, screen  # cleared before each render
    assert screen.count("housekeeper") == 2
