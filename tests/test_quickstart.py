"""mno quickstart on a fresh machine: fresh HOME, no MNO_* variables, no keyring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "mno", "quickstart", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or home,
    )


def test_quickstart_twice_on_a_fresh_home(tmp_path):
    home = tmp_path / "fresh-home"
    home.mkdir()
    first = _run(home)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert {s["step"]: s["changed"] for s in data["steps"]} == {
        "store": True,
        "app": True,
        "lead": True,
        "configs": False,
        "tenant": True,
        "access": False,
    }
    db = home / ".local" / "share" / "mno" / "mno.db"
    assert db.exists() and data["store"].endswith(str(db))
    again = _run(home)
    assert again.returncode == 0, again.stderr
    assert not any(s["changed"] for s in json.loads(again.stdout)["steps"])
    # the store holds exactly one example tenant and app
    listed = subprocess.run(
        [sys.executable, "-m", "mno", "tenant", "list", "-o", "json"],
        env={"PATH": os.environ["PATH"], "HOME": str(home)},
        capture_output=True,
        text=True,
    )
    tenants = json.loads(listed.stdout)
    assert [(t["key"], t["status"]) for t in tenants] == [("example-co", "active")]


def test_quickstart_applies_the_example_configs(tmp_path):
    home = tmp_path / "fresh-home"
    home.mkdir()
    first = _run(home, cwd=REPO)
    assert first.returncode == 0, first.stderr
    steps = {s["step"]: s for s in json.loads(first.stdout)["steps"]}
    assert steps["configs"]["changed"] and "created" in steps["configs"]["detail"]
    again = _run(home, cwd=REPO)
    steps = {s["step"]: s for s in json.loads(again.stdout)["steps"]}
    assert not steps["configs"]["changed"] and "no changes" in steps["configs"]["detail"]
    diff = subprocess.run(
        [sys.executable, "-m", "mno", "diff", "-f", "configs", "--source", "quickstart"],
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        },
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr
