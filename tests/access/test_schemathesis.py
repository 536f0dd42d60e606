"""Schemathesis against /openapi.json: no 5xx and no response that breaks the schema.

Beyond the body schemas, every status a route answers must be one its OpenAPI entry
documents (``status_code_conformance``), a method a path does not serve gets 405 with an
``Allow`` header naming every method it does serve (``unsupported_method``,
``allow_header_conformance``), and a request the schema does not allow (a number for a
time, a string for a boolean) or without a required header is refused with a 4xx
(``negative_data_rejection``, ``missing_required_header``).

The run is bounded: each response must come within ``MAX_RESPONSE`` seconds (a slow or
stuck request is reported as a failure naming it), the first failure ends the run, and
the whole run is killed after ``RUN_TIMEOUT`` seconds. When it fails or is killed, the
message carries schemathesis' output and the stacks of the server's threads.
"""

from __future__ import annotations

import faulthandler
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from tests.access.conftest import basic

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
        "unsupported_method",
        "allow_header_conformance",
        "negative_data_rejection",
        "missing_required_header",
    ]
)
MAX_RESPONSE = 10  # seconds for one response
RUN_TIMEOUT = 300  # seconds for the whole run


def _server_stacks() -> str:
    with tempfile.TemporaryFile("w+") as fh:
        faulthandler.dump_traceback(fh, all_threads=True)
        fh.seek(0)
        return fh.read()[-8000:]


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_schemathesis_finds_no_server_errors(api, app_key, acme, api_profile, session, tmp_path):
    api_profile(api={"rate_limit": 100000, "rate_burst": 100000})
    from mno.store.models.billing import BillingMetric

    with session() as s:  # the schema's examples bill acme and meter api_calls
        s.add(BillingMetric(code="api_calls", name="API calls"))
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.fail("schemathesis is not installed (pip install -e '.[dev]')")
    header = basic(app_key["key_id"], app_key["secret"])["Authorization"]
    command = [
        exe,
        "run",
        f"{api}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        "25",
        "--seed",
        "1",
        "--workers",
        "1",
        "--max-failures",
        "1",
        "--max-response-time",
        str(MAX_RESPONSE),
        "--request-timeout",
        str(MAX_RESPONSE * 2),
        "-H",
        f"Authorization: {header}",
        "--no-color",
    ]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(
            f"schemathesis ran over {RUN_TIMEOUT}s\n{out[-4000:]}\n"
            f"server threads:\n{_server_stacks()}"
        )
    if proc.returncode != 0:
        pytest.fail(f"{out[-6000:]}\nserver threads:\n{_server_stacks()}")
    tested = re.search(r"Tested: (\d+)", out)
    assert tested and int(tested.group(1)) >= 2, out[-3000:]
    assert re.search(r"(\d+) generated, \1 passed", out), out[-3000:]
