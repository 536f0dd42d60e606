"""The HTML dashboard: self-contained, and it renders in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.reports.test_tenants_kpis import seed

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _write_report(cli, tmp_path: Path) -> Path:
    out = tmp_path / "site" / "report.html"
    out.parent.mkdir()
    result = cli("report", "html", "--out", str(out), "--period", "2026-11", "--months", "6")
    assert result.exit_code == 0, result.stderr
    return out


def test_html_is_self_contained(cli, session, tmp_path):
    seed(session)
    page = _write_report(cli, tmp_path).read_text()
    assert "<script" not in page.lower()
    # the only URL is the SVG namespace; nothing is fetched
    assert set(re.findall(r"https?://[^\"' )]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "<svg" in page and "Month (YY/MM)" in page and ">tenants</text>" in page
    assert "new tenants" in page


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by scripts/test")
def test_html_renders_in_chromium(cli, session, tmp_path):
    seed(session)
    out = _write_report(cli, tmp_path)
    handler = partial(SimpleHTTPRequestHandler, directory=str(out.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    shot = tmp_path / "shot.png"
    netlog = tmp_path / "netlog.json"
    try:
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--enable-logging=stderr",
                "--v=0",
                f"--log-net-log={netlog}",
                "--window-size=1400,1100",
                f"--screenshot={shot}",
                f"{origin}/report.html",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    started = [
        e["params"]["url"]
        for e in log["events"]
        if names.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in e.get("params", {})
    ]
    assert f"{origin}/report.html" in started
    from_page = [
        e["params"]["url"]
        for e in log["events"]
        if names.get(e["type"]) == "URL_REQUEST_START_JOB"
        and e.get("params", {}).get("initiator") == origin
        and not e["params"]["url"].endswith("/favicon.ico")
    ]
    assert from_page == []
