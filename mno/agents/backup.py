"""The backup agent: scheduled restic backups of Nex instances' data volumes.

Each tick backs up every instance whose backup is due (``mno.nex.offsite_backups``: the
app's, the tier's or the platform's ``every``), at most ``batch_size`` per pass, each
under a named lock so that several ``mno agents run`` hosts never back up the same
instance twice, then applies the platform's ``keep_*`` retention to it with
``restic forget --prune``. With no ``backups.repository`` in the platform YAML it does
nothing. Failures are recorded on the backup row and as ``instance.backup_failed``; the
instance is tried again after ``backups.retry``.
"""

from __future__ import annotations

from typing import Any

from mno.agents.base import TickContext, TickResult
from mno.nex import offsite_backups

DEFAULT_OPTIONS: dict[str, Any] = {}


def tick(ctx: TickContext) -> TickResult:
    result = TickResult()
    done = offsite_backups.run_due(
        ctx.owner, db_url=ctx.db_url, limit=ctx.batch_size, stopping=ctx.stopping
    )
    result.claimed = done.done + done.failed
    result.done = done.done
    result.failed = done.failed
    result.details = {"due": done.due, "skipped": done.skipped, "pruned": done.pruned}
    for name, error in (done.errors or {}).items():
        ctx.log.warning("backup of %s failed: %s", name, error, extra={"agent": ctx.agent})
    return result
