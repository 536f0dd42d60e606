"""Third-party API servers on loopback for the sync tests: json-server (npm, 0.17.4) and
Datasette (PyPI), each started as its own process on a free 127.0.0.1 port.

json-server is looked for under ``.cache/node`` (``scripts/test`` installs it there with
``npm install --prefix .cache/node json-server@0.17.4``); when it is missing and npm is
present it is installed the same way. It is served with a middleware that stamps
``updated_at`` on every write, as an API with change tracking does.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
NODE_PREFIX = ROOT / ".cache" / "node"
JSON_SERVER_VERSION = "0.17.4"
STAMP_JS = Path(__file__).with_name("json_server_stamp.js")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def json_server_bin() -> Path | str:
    """The json-server executable, installed under ``.cache/node`` if npm can; a string
    saying why not otherwise."""
    binary = NODE_PREFIX / "node_modules" / ".bin" / "json-server"
    if shutil.which("node") is None:
        return "needs node, which is not installed (scripts/test installs it with apt)"
    if binary.exists():
        return binary
    if shutil.which("npm") is None:
        return "is missing and npm is not installed (scripts/test installs it with apt)"
    done = subprocess.run(
        ["npm", "install", "--prefix", str(NODE_PREFIX), f"json-server@{JSON_SERVER_VERSION}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not binary.exists():
        return f"could not be installed with npm: {done.stderr.strip()[-300:]}"
    return binary


class Process:
    """A server process on ``url``, ready once ``probe`` answers 200."""

    def __init__(self, argv: list[str], url: str, probe: str, log: Path) -> None:
        self.url = url
        self.log = log
        self.out = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.out.close()
                raise RuntimeError(f"{argv[0]} exited: {log.read_text()[-500:]}")
            try:
                if httpx.get(url + probe, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[0]} did not answer on {url}: {log.read_text()[-500:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


class JsonServer(Process):
    """json-server over ``db.json`` with a ``contacts`` collection; this class reads and
    writes it through json-server's own REST API."""

    def __init__(self, binary: Path, tmp: Path, contacts: list[dict[str, Any]]) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        db = tmp / "db.json"
        db.write_text(json.dumps({"contacts": contacts}))
        port = free_port()
        argv = [str(binary), str(db), "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--middlewares", str(STAMP_JS), "--quiet"]
        super().__init__(argv, f"http://127.0.0.1:{port}", "/contacts?_limit=1", tmp / "log")
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def all(self) -> dict[int, dict[str, Any]]:
        return {row["id"]: row for row in self.http.get("/contacts").json()}

    def get(self, rid: int) -> dict[str, Any] | None:
        response = self.http.get(f"/contacts/{rid}")
        return None if response.status_code == 404 else dict(response.json())

    def create(self, **fields: Any) -> dict[str, Any]:
        response = self.http.post("/contacts", json=fields)
        response.raise_for_status()
        return dict(response.json())

    def edit(self, rid: int, **fields: Any) -> None:
        self.http.patch(f"/contacts/{rid}", json=fields).raise_for_status()

    def delete(self, rid: int) -> None:
        self.http.delete(f"/contacts/{rid}").raise_for_status()

    def stop(self) -> None:
        self.http.close()
        super().stop()


class Datasette(Process):
    """Datasette serving ``crm.db`` (database ``crm``, table ``contacts``); datasette is
    read-only, so this class edits the SQLite file directly."""

    COLUMNS = "id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT, updated_at TEXT, "
    COLUMNS += "deleted INTEGER NOT NULL DEFAULT 0"

    def __init__(self, tmp: Path, contacts: list[dict[str, Any]]) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.db = tmp / "crm.db"
        conn = self.connect()
        try:
            conn.execute("BEGIN")
            conn.execute(f"CREATE TABLE contacts ({self.COLUMNS})")
            conn.executemany(
                "INSERT INTO contacts (id, name, email, phone, updated_at) "
                "VALUES (:id, :name, :email, :phone, :updated_at)",
                contacts,
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        port = free_port()
        argv = [sys.executable, "-m", "datasette", "serve", str(self.db)]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        for name, value in (
            ("suggest_facets", "off"),
            ("sql_time_limit_ms", "10000"),
            ("max_returned_rows", "1000"),
        ):
            argv += ["--setting", name, value]
        url = f"http://127.0.0.1:{port}"
        super().__init__(argv, url, "/crm/contacts.json?_size=1", tmp / "log")

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def execute(self, sql: str, *params: Any) -> None:
        conn = self.connect()
        try:
            conn.execute(sql, params)
        finally:
            conn.close()
