"""mno quickstart: a working example platform on the embedded store.

``mno.quickstart`` (which reaches most domain packages) is imported when the command
runs, not for ``--help``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, console, render


def quickstart(
    configs: Annotated[
        Path, typer.Option("--configs", help="Example platform documents to apply.")
    ] = Path("configs"),
    output: OutputOpt = Format.table,
) -> None:
    """Create the store, an example app and a tenant from a verified lead (safe to rerun)."""
    from mno import quickstart as qs

    result = qs.run(configs)
    if output is not Format.table:
        render(result.as_dict() | {"next": qs.NEXT_STEPS}, output)
        return
    out = console()
    out.print("[bold]mno quickstart[/bold]")
    for step in result.steps:
        mark = "[green]✓[/green]" if step.done else "[dim]=[/dim]"
        out.print(f" {mark} {step.name:<7} {step.detail}", highlight=False)
    out.print("\n[bold]Try next:[/bold]")
    for command in qs.NEXT_STEPS:
        out.print(f"  {command}", highlight=False)
