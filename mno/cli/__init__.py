"""The ``mno`` command line: the root app, global options and the single error handler.

Commands are thin: parse, open a session, call one domain function, render. Domain
errors become one red line on stderr and an exit code (0 ok, 1 refusal, 2 bad input,
3 unreachable). ``MNO_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mno import __version__, settings


class MnoGroup(TyperGroup):
    """Turns domain errors raised anywhere below into ``Error: …`` and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:  # noqa: BLE001 - the single handler
            if _is_click_control(exc):
                raise
            code = handle_error(exc)
            ctx.exit(code)


def _is_click_control(exc: BaseException) -> bool:
    """Usage errors, aborts and exits belong to click (typer may vendor its own copy)."""
    module = type(exc).__module__
    return module.startswith(("click.", "typer._click", "typer."))


def handle_error(exc: BaseException) -> int:
    from mno.cli import output
    from mno.errors import MnoError, Unavailable

    if os.environ.get(settings.ENV_DEBUG):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, MnoError):
        output.error(str(exc))
        return exc.exit_code
    module = type(exc).__module__
    if module.startswith(("sqlalchemy", "psycopg", "sqlite3")):
        from sqlalchemy import exc as sa_exc

        if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError):
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            output.error(f"the store cannot be reached: {detail}")
            return Unavailable.exit_code
        if isinstance(exc, sa_exc.IntegrityError):
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            output.error(f"conflict in the store: {detail}")
            return 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    output.error(f"{type(exc).__name__}: {exc} (set MNO_DEBUG=1 for the traceback)")
    return 1


app = typer.Typer(
    name="mno",
    cls=MnoGroup,
    help="mno: the control plane for multi-tenant SaaS platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mno {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Store URL (sqlite:///… or postgresql+psycopg://…).",
            envvar=settings.ENV_DB_URL,
            show_envvar=True,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="Profile in $MNO_HOME/config.yaml.",
            envvar=settings.ENV_PROFILE,
            show_envvar=True,
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="Platform YAML (default $MNO_HOME/platform.yaml).",
            envvar=settings.ENV_CONFIG,
            show_envvar=True,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    """mno: the control plane for multi-tenant SaaS platforms."""
    from mno.cli import output

    output.reset()
    settings.configure(db_url=db, profile=profile, config=config)


# Command groups: (name, module with a typer ``app``). One line each.
GROUPS: list[tuple[str, str]] = [
    ("tenant", "mno.cli.tenants"),
    ("app", "mno.cli.apps"),
    ("lead", "mno.cli.leads"),
    ("db", "mno.cli.db_cmd"),
    ("audit", "mno.cli.audit_cmd"),
    ("events", "mno.cli.events_cmd"),
    ("report", "mno.cli.reports"),
    ("secret", "mno.cli.secrets"),
]

# Modules that add top-level commands with a ``register(app)`` function. One line each.
ROOT_COMMANDS: list[str] = [
    "mno.cli.quickstart",
    "mno.cli.gitops",
]


def _register() -> None:
    import importlib

    for name, module in GROUPS:
        app.add_typer(importlib.import_module(module).app, name=name)
    for module in ROOT_COMMANDS:
        importlib.import_module(module).register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app()
