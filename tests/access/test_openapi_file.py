"""docs/openapi.json is the document the server serves at /openapi.json."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

FILE = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_the_checked_in_document_is_the_served_one(api) -> None:
    served = httpx.get(f"{api}/openapi.json").json()
    assert FILE.exists(), f"{FILE} is missing: run scripts/openapi"
    checked_in = json.loads(FILE.read_text())
    assert served == checked_in, "docs/openapi.json differs from /openapi.json: run scripts/openapi"
