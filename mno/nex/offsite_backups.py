"""Scheduled, encrypted, off-host backups of instances' data volumes (restic).

The platform YAML's ``backups:`` section names one restic repository (a local path,
``sftp:user@host:/path`` or ``rest:URL``) and its password as ``secret:NAME``; the
secret is resolved only when restic runs. An instance is backed up every ``every``: the
app's ``backup_every`` if set, else its tenant's tier's ``backup.every``, else
``backups.every`` (none of them: not on a schedule). Instances without a data volume or
never provisioned have nothing to back up.

A backup streams the volume's tar out of the container (``mno.nex.backups``' helper
container when there is none) into ``restic backup --stdin``: nothing lands on the local
disk. Each run is a ``nex_backup`` row (running, then succeeded with the snapshot id and
size, or failed with the error), with an audit row and an ``instance.backed_up`` or
``instance.backup_failed`` event. A named lock per instance (``nex-backup:<id>``) makes
each due backup run once across every ``mno agents run`` host: the holder re-reads the
last success after taking it. After each scheduled backup the ``keep_*`` policy is
applied with ``restic forget --prune`` to that instance's snapshots; a failed backup is
tried again after ``backups.retry``.

Restore dumps the snapshot's tar to a temporary file with its ``.sha256`` beside it and
hands both to ``mno.nex.backups.restore`` (checksum, then the volume is replaced).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno import clock, platform, secrets, settings
from mno.errors import BadInput, Conflict, InvalidTransition, NotFound

# the container stack (backups, hosts, …) loads where used: ``overview`` needs none of it
from mno.nex import restic
from mno.settings import parse_duration
from mno.store import audit
from mno.store.db import session_scope
from mno.store.types import UTCDateTime, table_of

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.nex import snapshot

# the columns ``states`` reads, as plain tables: ``mno report`` loads no ORM model for them
_META = sa.MetaData()
_INSTANCE = sa.Table(
    "nex_instance",
    _META,
    *(sa.Column(c, sa.Uuid()) for c in ("id", "app_id", "tenant_id")),
    *(sa.Column(c, sa.String()) for c in ("name", "status", "desired", "volume_path", "host")),
    sa.Column("created_at", UTCDateTime()),
)
_APP = sa.Table(
    "app",
    _META,
    sa.Column("id", sa.Uuid()),
    sa.Column("code", sa.String()),
    sa.Column("backup_every", sa.String()),
)
_TENANT = sa.Table(
    "tenant",
    _META,
    sa.Column("id", sa.Uuid()),
    sa.Column("key", sa.String()),
    sa.Column("tier", sa.String()),
)
_BACKUP = sa.Table(
    "nex_backup",
    _META,
    sa.Column("instance_id", sa.Uuid()),
    *(sa.Column(c, sa.String()) for c in ("status", "snapshot_id", "error")),
    sa.Column("started_at", UTCDateTime()),
)

LOCK_TTL = timedelta(hours=2)  # longer than any backup; a dead holder's lock is taken over


def lock_name(instance_id: uuid.UUID) -> str:
    return f"nex-backup:{instance_id}"


def tags(instance_id: uuid.UUID) -> list[str]:
    return ["mno", f"instance={instance_id}"]


def config() -> platform.BackupsConfig:
    return platform.load().backups


def repository(cfg: platform.BackupsConfig | None = None) -> restic.Repository:
    """The platform's restic repository, its password read from the secret store."""
    cfg = cfg or config()
    if not cfg.repository or not cfg.password:
        raise BadInput(
            "no backup repository is configured",
            "set backups.repository and backups.password (secret:NAME) in the platform YAML",
        )
    password = secrets.resolve(cfg.password)
    cache = settings.home() / "cache" / "restic"
    cache.mkdir(parents=True, exist_ok=True)
    return restic.Repository(
        url=cfg.repository,
        password=password,
        host=cfg.host,
        sftp_command=cfg.sftp_command,
        cache_dir=cache,
    )


def keep_policy(cfg: platform.BackupsConfig) -> dict[str, int]:
    return {k: int(v) for k in restic.KEEP if (v := getattr(cfg, k)) is not None}


def schedule(app_every: str | None, tier: str | None, cfg: platform.PlatformConfig) -> str | None:
    """The backup interval of an instance: its app's, its tier's, or the platform's."""
    if app_every:
        return app_every
    tier_cfg = cfg.tiers.get(tier or "")
    if tier_cfg is not None and tier_cfg.backup is not None:
        return tier_cfg.backup.every
    return cfg.backups.every


# -- state of every instance ----------------------------------------------------------


@dataclass
class BackupState:
    id: uuid.UUID
    name: str
    tenant: str
    app: str
    created_at: datetime
    every: str | None
    last_success: datetime | None
    last_snapshot: str | None
    last_failure: datetime | None
    last_error: str | None

    def next_due(self, retry: timedelta) -> datetime | None:
        if not self.every:
            return None
        due = (self.last_success + parse_duration(self.every)) if self.last_success else None
        if self.last_failure and (not self.last_success or self.last_failure > self.last_success):
            after_failure = self.last_failure + retry
            due = max(due, after_failure) if due else after_failure
        return due

    def is_due(self, now: datetime, retry: timedelta) -> bool:
        if not self.every:
            return False
        due = self.next_due(retry)
        return due is None or due <= now

    def overdue(self, now: datetime, grace: timedelta) -> bool:
        """No success within the schedule plus the grace (never backed up counts once the
        instance has existed that long)."""
        if not self.every:
            return False
        limit = parse_duration(self.every) + grace
        return now - (self.last_success or self.created_at) > limit


def states(session: Session, ids: list[uuid.UUID] | None = None) -> list[BackupState]:
    """Every live, provisioned instance with a data volume and its last backups (a fixed
    number of queries whatever the number of instances)."""
    cfg = platform.load()
    inst, app, tenant, bk = _INSTANCE, _APP, _TENANT, _BACKUP
    where = [
        inst.c.status != "terminated",
        inst.c.desired != "terminated",
        inst.c.volume_path.is_not(None),
        inst.c.host.is_not(None),
    ]
    if ids is not None:
        where.append(inst.c.id.in_(ids))
    rows = session.execute(
        sa.select(
            inst.c.id,
            inst.c.name,
            tenant.c.key,
            tenant.c.tier,
            app.c.code,
            app.c.backup_every,
            inst.c.created_at,
        )
        .join(app, app.c.id == inst.c.app_id)
        .join(tenant, tenant.c.id == inst.c.tenant_id)
        .where(*where)
        .order_by(inst.c.name)
    ).all()
    found = [r[0] for r in rows]
    success: dict[uuid.UUID, datetime] = {}
    failure: dict[uuid.UUID, datetime] = {}
    last: dict[uuid.UUID, tuple[str | None, str | None]] = {}
    if found:
        # the latest succeeded and the latest failed run of each instance, in one query
        latest = (
            sa.select(bk.c.instance_id, bk.c.status, sa.func.max(bk.c.started_at).label("at"))
            .where(bk.c.instance_id.in_(found), bk.c.status.in_(("succeeded", "failed")))
            .group_by(bk.c.instance_id, bk.c.status)
            .subquery()
        )
        for iid, status, at, snap, error in session.execute(
            sa.select(
                bk.c.instance_id, bk.c.status, bk.c.started_at, bk.c.snapshot_id, bk.c.error
            ).join(
                latest,
                sa.and_(
                    bk.c.instance_id == latest.c.instance_id,
                    bk.c.status == latest.c.status,
                    bk.c.started_at == latest.c.at,
                ),
            )
        ):
            prev = last.get(iid, (None, None))
            if status == "succeeded":
                success[iid] = at
                last[iid] = (snap, prev[1])
            else:
                failure[iid] = at
                last[iid] = (prev[0], error)
    return [
        BackupState(
            id=r[0],
            name=r[1],
            tenant=r[2],
            app=r[4],
            created_at=r[6],
            every=schedule(r[5], r[3], cfg),
            last_success=success.get(r[0]),
            last_snapshot=(last.get(r[0]) or (None, None))[0],
            last_failure=failure.get(r[0]),
            last_error=(last.get(r[0]) or (None, None))[1],
        )
        for r in rows
    ]


# -- the repository -------------------------------------------------------------------

_ready: set[str] = set()  # repositories this process has seen initialised


def ensure_repository(repo: restic.Repository, owner: str, db_url: str | None = None) -> None:
    """Create the repository on first use, once: two ``restic init`` at the same time would
    each write a key, and one process would then hold a key the repository lacks."""
    from mno.store import leases

    if repo.url in _ready:
        return
    deadline = time.monotonic() + 120
    while True:
        with session_scope(db_url) as s:
            taken = leases.take_lock(s, "nex-backup-init", owner, timedelta(minutes=5))
        if taken:
            break
        if time.monotonic() > deadline:
            raise Conflict("another process is creating the backup repository", "try again")
        time.sleep(0.2)
    try:
        repo.init()
        _ready.add(repo.url)
    finally:
        with session_scope(db_url) as s:
            leases.release_lock(s, "nex-backup-init", owner)


# -- one backup -----------------------------------------------------------------------


def _start(iid: uuid.UUID, repo_url: str, trigger: str, owner: str, db_url: str | None) -> Any:
    """Record a running backup. The caller holds the instance's lock, so a row still
    running belongs to a process that stopped mid-backup: it is marked failed."""
    from mno.store.models.nex import InstanceBackup

    bk = table_of(InstanceBackup)
    with session_scope(db_url) as s:
        now = clock.now()
        s.execute(
            sa.update(bk)
            .where(bk.c.instance_id == iid, bk.c.status == "running")
            .values(
                status="failed",
                finished_at=now,
                updated_at=now,
                error="interrupted: the process stopped during the backup",
            )
        )
        row = InstanceBackup(
            instance_id=iid,
            status="running",
            trigger=trigger,
            repository=repo_url[:500],
            owner=owner[:200],
            started_at=clock.now(),
        )
        s.add(row)
        s.flush()
        return row.id


def _finish(
    row_id: uuid.UUID,
    snap: snapshot.Snapshot,
    result: restic.BackupResult | None,
    error: str | None,
    db_url: str | None,
) -> None:
    from mno.store import outbox
    from mno.store.models.nex import InstanceBackup

    with session_scope(db_url) as s:
        row = s.get(InstanceBackup, row_id)
        assert row is not None
        row.finished_at = clock.now()
        row.touch()
        payload: dict[str, Any] = {"id": str(snap.id), "name": snap.name, "trigger": row.trigger}
        if result is not None:
            row.status = "succeeded"
            row.snapshot_id = result.snapshot_id
            row.bytes = result.bytes
            payload |= {"snapshot": result.snapshot_id, "bytes": result.bytes}
            action, event = "instance.backup", "instance.backed_up"
        else:
            row.status = "failed"
            row.error = (error or "unknown error")[:2000]
            payload |= {"error": row.error}
            action, event = "instance.backup_failed", "instance.backup_failed"
        s.add(row)
        audit.record(
            s,
            action,
            target_type="instance",
            target_id=snap.id,
            target=snap.name,
            after={k: v for k, v in payload.items() if k not in ("id", "name")},
            tenant_id=snap.tenant_id,
        )
        outbox.emit(s, event, payload, snap.tenant_id)


def _load(ref: str | uuid.UUID, db_url: str | None) -> snapshot.Snapshot:
    from mno.nex import instances, snapshot

    with session_scope(db_url, write=False) as s:
        iid = instances.get(s, ref).id if not isinstance(ref, uuid.UUID) else ref
    snap = snapshot.load(iid, db_url)
    if snap is None:
        raise NotFound(f"instance {ref} not found")
    if not snap.volume_path:
        raise BadInput(f"instance {snap.name} has no data volume", "its app sets no volume path")
    if not snap.host:
        raise InvalidTransition(f"instance {snap.name} was never provisioned; nothing to back up")
    return snap


def _run(
    snap: snapshot.Snapshot,
    repo: restic.Repository,
    trigger: str,
    owner: str,
    db_url: str | None,
) -> dict[str, Any]:
    from mno.nex import backups, hosts, runtime_docker

    row_id = _start(snap.id, repo.url, trigger, owner, db_url)
    try:
        ensure_repository(repo, owner, db_url)
        assert snap.host
        rt = runtime_docker.runtime(hosts.find(snap.host, snap.hosts or hosts.configured()))
        volume_path = str(snap.volume_path)
        attempts = 3
        while True:
            try:
                result: restic.BackupResult = backups._with_container(
                    rt,
                    snap,
                    lambda ref: repo.backup(
                        rt.get_archive(ref, volume_path),
                        f"{snap.name}.tar",
                        tags(snap.id),
                        clock.now(),
                    ),
                )
                break
            except restic.ResticFailed as exc:
                attempts -= 1
                if not exc.locked or attempts <= 0:
                    raise
                repo.unlock()
    except Exception as exc:
        if isinstance(exc, restic.ResticFailed):
            _ready.discard(repo.url)  # checked again next time (it may have been removed)
        _finish(row_id, snap, None, repo.mask(str(exc)), db_url)
        raise
    _finish(row_id, snap, result, None, db_url)
    return {
        "instance": snap.name,
        "snapshot": result.snapshot_id,
        "bytes": result.bytes,
        "repository": repo.url,
    }


def create(
    ref: str, *, db_url: str | None = None, owner: str | None = None, trigger: str = "manual"
) -> dict[str, Any]:
    """Back up the instance now (whatever its schedule) into the platform's repository."""
    from mno.store import leases

    repo = repository()
    snap = _load(ref, db_url)
    owner = owner or leases.make_owner()
    with session_scope(db_url) as s:
        if not leases.take_lock(s, lock_name(snap.id), owner, LOCK_TTL):
            raise Conflict(f"a backup of {snap.name} is running", "try again when it is done")
    try:
        return _run(snap, repo, trigger, owner, db_url)
    finally:
        with session_scope(db_url) as s:
            leases.release_lock(s, lock_name(snap.id), owner)


def list_snapshots(ref: str, *, db_url: str | None = None) -> list[dict[str, Any]]:
    """The instance's snapshots in the repository, oldest first, with their sizes."""
    from mno.nex import instances
    from mno.store.models.nex import InstanceBackup

    repo = repository()
    with session_scope(db_url, write=False) as s:
        inst = instances.get(s, ref)
        iid, name = inst.id, inst.name
    if not repo.exists():
        return []
    snaps = repo.snapshots(tags(iid))
    sizes: dict[str, int | None] = {}
    started: dict[str, datetime] = {}
    if snaps:
        bk = table_of(InstanceBackup)
        with session_scope(db_url, write=False) as s:
            for snap_id, size, at in s.execute(
                sa.select(bk.c.snapshot_id, bk.c.bytes, bk.c.started_at).where(
                    bk.c.instance_id == iid, bk.c.status == "succeeded"
                )
            ):
                sizes[snap_id] = size
                started[snap_id] = at

    def order(sn: Any) -> tuple[datetime, datetime]:
        # snapshots taken within one second share restic's time: the store's start decides
        return (sn.time, started.get(sn.short_id, started.get(sn.id, sn.time)))

    return [
        {"instance": name} | sn.as_dict() | {"bytes": sizes.get(sn.short_id, sizes.get(sn.id))}
        for sn in sorted(snaps, key=order)
    ]


def restore(
    ref: str,
    snapshot_id: str,
    *,
    db_url: str | None = None,
) -> dict[str, Any]:
    """Replace the instance's data with a snapshot: dump it to a temporary tar with its
    ``.sha256`` beside it, then ``mno.nex.backups.restore`` (checked, then swapped)."""
    from mno.nex import backups, instances

    repo = repository()
    with session_scope(db_url, write=False) as s:
        inst = instances.get(s, ref)
        iid, name = inst.id, inst.name
    wanted = snapshot_id.strip().lower()
    if not wanted or not all(c in "0123456789abcdef" for c in wanted):
        raise BadInput(f"invalid snapshot id {snapshot_id!r}", "see `mno instance backup list`")
    matches = [sn for sn in repo.snapshots(tags(iid)) if sn.id.startswith(wanted)]
    if not matches:
        raise NotFound(
            f"no snapshot {snapshot_id} of instance {name}", "see `mno instance backup list`"
        )
    if len(matches) > 1:
        raise BadInput(f"snapshot id {snapshot_id} is ambiguous", "give more characters")
    chosen = matches[0]
    filename = next((p.lstrip("/") for p in chosen.paths), f"{name}.tar")
    work = Path(tempfile.mkdtemp(prefix="mno-restore-", dir=backups.backups_dir()))
    try:
        tar = work / f"{name}.tar"
        checksum = repo.dump(chosen.id, filename, tar)
        tar.with_name(tar.name + ".sha256").write_text(f"{checksum}  {tar.name}\n")
        result = dict(backups.restore(name, tar, db_url=db_url))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.pop("file", None)  # the temporary tar is gone
    return result | {"instance": name, "snapshot": chosen.short_id}


def apply_retention(iid: uuid.UUID, repo: restic.Repository | None = None) -> int:
    """``restic forget --prune`` of the instance's snapshots; how many were removed."""
    cfg = config()
    keep = keep_policy(cfg)
    if not keep:
        return 0
    repo = repo or repository(cfg)
    before = len(repo.snapshots(tags(iid)))
    if before == 0:
        return 0
    repo.forget(tags(iid), keep)
    return before - len(repo.snapshots(tags(iid)))


# -- the schedule -----------------------------------------------------------------------


@dataclass
class Pass:
    due: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # another owner holds it, or it was done meanwhile
    pruned: int = 0
    errors: dict[str, str] | None = None


def run_due(
    owner: str,
    *,
    db_url: str | None = None,
    limit: int = 100,
    stopping: Callable[[], bool] = lambda: False,
) -> Pass:
    """Back up every instance whose backup is due, once across all owners, then apply
    retention to it. Returns what the pass did."""
    from mno.store import leases

    out = Pass(errors={})
    cfg = config()
    if not cfg.repository:
        return out
    retry = parse_duration(cfg.retry)
    now = clock.now()
    with session_scope(db_url, write=False) as s:
        due = [st for st in states(s) if st.is_due(now, retry)][:limit]
    out.due = len(due)
    if not due:
        return out
    repo = repository(cfg)
    for state in due:
        if stopping():
            break
        name = lock_name(state.id)
        with session_scope(db_url) as s:
            if not leases.take_lock(s, name, owner, LOCK_TTL):
                out.skipped += 1
                continue
        try:
            with session_scope(db_url, write=False) as s:
                fresh = states(s, [state.id])
            if not fresh or not fresh[0].is_due(clock.now(), retry):
                out.skipped += 1
                continue
            try:
                _run(_load(state.id, db_url), repo, "schedule", owner, db_url)
                out.done += 1
            except Exception as exc:  # recorded on the backup row and as an event
                out.failed += 1
                assert out.errors is not None
                out.errors[state.name] = repo.mask(str(exc))
                continue
            try:
                out.pruned += apply_retention(state.id, repo)
            except restic.ResticFailed as exc:
                assert out.errors is not None
                out.errors[state.name] = f"retention: {exc.message}"
        finally:
            with session_scope(db_url) as s:
                leases.release_lock(s, name, owner)
    return out


def overview(session: Session) -> dict[str, Any]:
    """Last successful backup per instance and the overdue ones (for ``mno report``)."""
    cfg = config()
    now = clock.now()
    grace = parse_duration(cfg.grace)
    retry = parse_duration(cfg.retry)
    rows = []
    for st in states(session):
        rows.append(
            {
                "instance": st.name,
                "tenant": st.tenant,
                "app": st.app,
                "every": st.every,
                "last_success": audit.jsonable(st.last_success),
                "snapshot": st.last_snapshot,
                "next_due": audit.jsonable(st.next_due(retry)),
                "overdue": st.overdue(now, grace),
                "last_error": st.last_error
                if st.last_failure and (not st.last_success or st.last_failure > st.last_success)
                else None,
            }
        )
    return {
        "configured": bool(cfg.repository),
        "scheduled": sum(1 for r in rows if r["every"]),
        "overdue": [r for r in rows if r["overdue"]],
        "instances": rows,
    }
