"""Schemathesis against the Hub API routes, acting as a platform operator: no 5xx, no
answer outside its documented statuses, content types, schemas and headers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tests.access.test_schemathesis import CHECKS, MAX_RESPONSE

RUN_TIMEOUT = 240


def test_schemathesis_finds_nothing_in_the_hub_api(hub, world, api_profile, tmp_path):
    api_profile(api={"rate_limit": 100000, "rate_burst": 100000})
    exe = shutil.which("schemathesis") or shutil.which("st")
    assert exe is not None, "schemathesis is not installed (pip install -e '.[dev]')"
    command = [
        exe,
        "run",
        f"{hub.base}/openapi.json",
        "--include-path-regex",
        "^/v1/hub",
        "--checks",
        CHECKS,
        "--max-examples",
        "5",
        "--seed",
        "1",
        "--workers",
        "1",
        "--max-failures",
        "1",
        "--max-response-time",
        str(MAX_RESPONSE),
        "-H",
        f"Authorization: Bearer {world['op']}",
        "--no-color",
    ]
    proc = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    tested = re.search(r"Tested: (\d+)", out)
    assert tested and int(tested.group(1)) >= 50, out[-3000:]
    assert re.search(r"(\d+) generated, \1 passed", out), out[-3000:]
