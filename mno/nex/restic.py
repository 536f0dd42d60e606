"""restic, the backup tool, behind a narrow adapter: one ``Repository`` per platform.

Each call runs the ``restic`` binary (Debian's package) with the repository's URL on the
command line and its password in ``RESTIC_PASSWORD`` of the child's environment only, so
the password is never an argument (``ps`` shows arguments), never logged, and it is
masked in any error text restic returns. ``sftp_command`` becomes restic's
``-o sftp.command=…`` (a key, a port, a known-hosts policy for an off-host repository).

Snapshots of an instance are a single file, ``/<name>.tar`` (the volume's tar stream read
from stdin), tagged ``mno`` and ``instance=<id>`` and written under the platform's
``--host``. A backup whose input stream fails is killed before restic commits it, so a
truncated stream never becomes a snapshot. Retention is ``restic forget --prune`` over the
instance's snapshots (grouped by tags). A repository locked by another restic
(``prune`` takes an exclusive lock) is waited for a while; stale locks of dead processes
are removed with ``restic unlock`` first.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from mno.errors import Unavailable

RESTIC = "restic"
LOCKED = "repository is already locked"
MISSING = "Is there a repository at the following location?"
KEEP = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


class ResticFailed(Unavailable):
    """restic returned an error (the repository is unreachable, locked or damaged)."""

    def __init__(self, message: str, hint: str | None = None, *, locked: bool = False) -> None:
        super().__init__(message, hint)
        self.locked = locked


@dataclass(frozen=True)
class Snapshot:
    id: str
    short_id: str
    time: datetime
    host: str
    tags: list[str]
    paths: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.short_id,
            "snapshot": self.id,
            "time": self.time.isoformat().replace("+00:00", "Z"),
            "host": self.host,
            "tags": self.tags,
        }


@dataclass(frozen=True)
class BackupResult:
    snapshot_id: str
    bytes: int


@dataclass(frozen=True)
class Repository:
    url: str
    password: str = field(repr=False)
    host: str = "mno"
    sftp_command: str | None = None
    cache_dir: Path | None = None
    lock_wait_s: float = 60.0

    # -- plumbing --------------------------------------------------------------------

    def _argv(self, *args: str) -> list[str]:
        argv = [RESTIC, "--repo", self.url]
        if self.cache_dir is not None:
            argv += ["--cache-dir", str(self.cache_dir)]
        else:
            argv += ["--no-cache"]
        if self.sftp_command:
            argv += ["-o", f"sftp.command={self.sftp_command}"]
        return argv + list(args)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env["RESTIC_PASSWORD"] = self.password
        env["TZ"] = "UTC"
        return env

    def mask(self, text: str) -> str:
        """restic's error text with the password (should it ever appear) masked."""
        if self.password:
            text = text.replace(self.password, "***")
        lines = [line for line in text.strip().splitlines() if line.strip()]
        return " ".join(lines[-3:])[:1000]

    def _fail(self, what: str, stderr: str) -> ResticFailed:
        message = self.mask(stderr) or "no output"
        if MISSING in stderr:
            return ResticFailed(
                f"restic {what}: no repository at {self.url}", "it is created on first backup"
            )
        return ResticFailed(f"restic {what} failed: {message}", locked=LOCKED in stderr)

    def run(self, *args: str, what: str | None = None, wait_lock: bool = True) -> str:
        """Run ``restic ARGS``; stdout. A locked repository is waited for ``lock_wait_s``."""
        deadline = time.monotonic() + self.lock_wait_s
        pause = 0.5
        while True:
            try:
                proc = subprocess.run(
                    self._argv(*args),
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise ResticFailed("restic is not installed", "apt-get install restic") from exc
            if proc.returncode == 0:
                return proc.stdout
            error = self._fail(what or args[0], proc.stderr)
            if not (error.locked and wait_lock) or time.monotonic() > deadline:
                raise error
            self.unlock()
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    def unlock(self) -> None:
        """Remove stale locks (of processes that died); live ones stay."""
        subprocess.run(
            self._argv("unlock"),
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )

    # -- operations ------------------------------------------------------------------

    def exists(self) -> bool:
        try:
            self.run("cat", "config", what="open")
        except ResticFailed as exc:
            if "no repository at" in exc.message:
                return False
            raise
        return True

    def init(self) -> bool:
        """Create the repository unless it exists; True when it was created."""
        if self.exists():
            return False
        try:
            self.run("init", what="init")
        except ResticFailed:
            if self.exists():  # another process created it meanwhile
                return False
            raise
        return True

    def backup(
        self,
        chunks: Iterable[bytes],
        filename: str,
        tags: Sequence[str],
        at: datetime,
    ) -> BackupResult:
        """Stream ``chunks`` into a new snapshot holding ``/<filename>``."""
        args = ["backup", "--stdin", "--stdin-filename", filename, "--host", self.host, "--json"]
        for tag in tags:
            args += ["--tag", tag]
        args += ["--time", at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(
                self._argv(*args), env=self._env(), stdin=subprocess.PIPE, stdout=out, stderr=err
            )
            assert proc.stdin is not None
            try:
                for chunk in chunks:
                    proc.stdin.write(chunk)
                proc.stdin.close()
            except BrokenPipeError:
                # restic stopped reading (e.g. a wrong password): its stderr says why
                proc.wait()
                _close_quietly(proc.stdin)
                raise self._fail("backup", _read(err) or "it stopped reading") from None
            except BaseException:
                proc.kill()  # a failed stream must not become a snapshot
                proc.wait()
                _close_quietly(proc.stdin)
                raise
            code = proc.wait()
            stdout, stderr = _read(out), _read(err)
        if code != 0:
            raise self._fail("backup", stderr)
        for line in reversed(stdout.splitlines()):
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(msg, dict) and msg.get("message_type") == "summary":
                return BackupResult(
                    snapshot_id=str(msg["snapshot_id"]),
                    bytes=int(msg.get("total_bytes_processed") or 0),
                )
        raise ResticFailed("restic backup gave no summary", self.mask(stdout))

    def snapshots(self, tags: Sequence[str]) -> list[Snapshot]:
        """The snapshots carrying every tag in ``tags``, oldest first."""
        out = self.run("snapshots", "--json", "--tag", ",".join(tags), what="snapshots")
        rows = json.loads(out or "[]") or []
        snaps = [
            Snapshot(
                id=r["id"],
                short_id=r.get("short_id") or r["id"][:8],
                time=_parse_time(r["time"]),
                host=r.get("hostname", ""),
                tags=list(r.get("tags") or []),
                paths=list(r.get("paths") or []),
            )
            for r in rows
        ]
        return sorted(snaps, key=lambda s: s.time)

    def dump(self, snapshot_id: str, filename: str, dest: Path) -> str:
        """Write ``/<filename>`` of the snapshot to ``dest``; its SHA-256."""
        digest = hashlib.sha256()
        with tempfile.TemporaryFile() as err, open(dest, "wb") as fh:
            proc = subprocess.Popen(
                self._argv("dump", snapshot_id, "/" + filename),
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
            assert proc.stdout is not None
            for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
                digest.update(chunk)
                fh.write(chunk)
            code = proc.wait()
            stderr = _read(err)
        if code != 0:
            raise self._fail("dump", stderr)
        return digest.hexdigest()

    def forget(self, tags: Sequence[str], keep: dict[str, int]) -> None:
        """``restic forget --prune`` of the snapshots with ``tags`` under policy ``keep``."""
        args = ["forget", "--prune", "--quiet", "--tag", ",".join(tags), "--group-by", "tags"]
        for name in KEEP:
            if keep.get(name):
                args += ["--" + name.replace("_", "-"), str(keep[name])]
        self.run(*args, what="forget")


def _close_quietly(fh: IO[bytes]) -> None:
    try:
        fh.close()
    except OSError:
        pass  # the reader is gone already


def _read(fh: IO[bytes]) -> str:
    fh.seek(0)
    return fh.read().decode(errors="replace")


def _parse_time(text: str) -> datetime:
    # restic writes RFC 3339 with nanoseconds; Python takes at most microseconds
    head, _, rest = text.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
