"""mno db: upgrade and inspect the store's schema."""

from __future__ import annotations

import typer

from mno.cli.output import Format, OutputOpt, render, success

app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Upgrade the store's schema to this mno's version."""
    from mno.store import db

    engine = db.get_engine()
    db.upgrade(engine)
    success(f"store at {db.redact(str(engine.url))} is at {', '.join(sorted(db.code_heads()))}")


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
