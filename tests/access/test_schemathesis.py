"""Schemathesis against /openapi.json: no 5xx and no response that breaks the schema."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.access.conftest import basic

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_schemathesis_finds_no_server_errors(api, app_key, acme, api_profile, tmp_path):
    api_profile(api={"rate_limit": 100000, "rate_burst": 100000})
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.fail("schemathesis is not installed (pip install -e '.[dev]')")
    header = basic(app_key["key_id"], app_key["secret"])["Authorization"]
    result = subprocess.run(
        [
            exe,
            "run",
            f"{api}/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "40",
            "--seed",
            "1",
            "-H",
            f"Authorization: {header}",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-6000:]
    tested = re.search(r"Tested: (\d+)", out)
    assert tested and int(tested.group(1)) >= 2, out[-3000:]
    assert re.search(r"(\d+) generated, \1 passed", out), out[-3000:]
