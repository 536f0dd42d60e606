"""mno doctor, mno version and mno config view."""

from __future__ import annotations

from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, render

config_app = typer.Typer(
    help="Show the settings in force and where they come from.", no_args_is_help=True
)


def doctor(
    skip_hosts: Annotated[
        bool, typer.Option("--skip-hosts", help="Do not contact the Docker hosts.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Check this host: store, master key, secrets, agents, Docker hosts and SMTP.

    Exit 0 when nothing failed (warnings allowed), 1 when a check failed."""
    from mno import doctor as checks

    results = checks.checks(probe_hosts=not skip_hosts)
    render(
        [c.as_dict() for c in results],
        output,
        columns=["name", "status", "detail", "hint"],
    )
    if any(c.status == checks.FAIL for c in results):
        raise typer.Exit(1)


def version(output: OutputOpt = Format.table) -> None:
    """Print mno's version, Python's and the schema revision this mno expects."""
    import platform

    from mno import __version__
    from mno.store import db

    data = {
        "version": __version__,
        "python": platform.python_version(),
        "schema": sorted(db.code_heads()),
    }
    if output is Format.table:
        typer.echo(
            f"mno {__version__} (python {data['python']}, schema {', '.join(data['schema'])})"
        )
        return
    render(data, output)


@config_app.command("view")
def view(output: OutputOpt = Format.table) -> None:
    """Show each setting in force and where it came from (flag, environment, profile)."""
    from mno import doctor as checks

    render(checks.effective_settings(), output, columns=["setting", "value", "source"])
