"""mno db: upgrade and inspect the store's schema.

The store is imported inside the commands that use it, like everywhere in the CLI: a
command's help starts without it.
"""

from __future__ import annotations

import typer

from mno.cli.output import Format, OutputOpt, done, render

app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)


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
