"""mno db: upgrade and inspect the store's schema, back it up and restore it.

The store is imported inside the commands that use it, like everywhere in the CLI: a
command's help starts without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, done, render
from mno.cli.params import YesOpt, confirm

app = typer.Typer(help="Manage the store: its schema, backups and restores.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(output: OutputOpt = Format.table) -> None:
    """Upgrade the store's schema to this mno's version."""
    from mno.store import db

    engine = db.get_engine()
    db.upgrade(engine)
    heads = sorted(db.code_heads())
    done(
        {"url": db.redact(str(engine.url)), "current": heads},
        f"store at {db.redact(str(engine.url))} is at {', '.join(heads)}",
        output,
    )


@app.command("current")
def current(output: OutputOpt = Format.table) -> None:
    """Show the store's schema revision and whether it is up to date."""
    from mno.store import db

    engine = db.get_engine()
    revs = db.store_revisions(engine) or set()
    heads = db.code_heads()
    state = "up to date" if revs == heads else ("empty" if not revs else "behind or ahead")
    render(
        {
            "url": db.redact(str(engine.url)),
            "current": sorted(revs),
            "heads": sorted(heads),
            "state": state,
        },
        output,
    )


@app.command("backup")
def backup(
    out: Annotated[
        Path, typer.Option("--out", help="The backup file to write (replaced if it exists).")
    ],
    output: OutputOpt = Format.table,
) -> None:
    """Write a consistent backup of the store, safe while agents run.

    SQLite is copied with its online backup API; PostgreSQL is dumped with pg_dump
    (custom format), which must be installed.
    """
    from mno.store import backup as store_backup

    result = store_backup.backup(out)
    done(
        result.as_dict(),
        f"backed up the store to {result.path} ({result.format}, {result.bytes} bytes, "
        f"schema {', '.join(result.revisions)})",
        output,
    )


@app.command("restore")
def restore(
    source: Annotated[Path, typer.Argument(help="A file written by `mno db backup`.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Replace the store's contents with a backup (stop the agents first).

    A backup from a newer mno is refused; one from an older mno is restored and then
    upgraded. The SQLite store being replaced is kept beside it.
    """
    from mno.store import backup as store_backup
    from mno.store import db

    confirm(f"replace the store at {db.redact(str(db.get_engine().url))} with {source}", yes)
    result = store_backup.restore(source)
    extra = f"; the replaced store is kept at {result.kept}" if result.kept else ""
    upgraded = " and upgraded it" if result.upgraded else ""
    done(result.as_dict(), f"restored the store from {result.source}{upgraded}{extra}", output)
