"""The ``mno`` command line: the root app, global options and the single error handler.

Commands are thin: parse, open a session, call one domain function, render. Domain
errors become one red line on stderr and an exit code (0 ok, 1 refusal, 2 bad input,
3 unreachable). ``MNO_DEBUG=1`` adds the traceback.

The output module (rich) and SQLAlchemy's error classes are imported inside the error
handler and the root callback: `mno --help` loads neither.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
from typing import Annotated, Any

# Plain help output: rendering help through rich costs more start-up time than the whole
# command tree. Set TYPER_USE_RICH=1 to get the rich layout back.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from mno import __version__, settings  # noqa: E402
from mno.errors import MnoError, Unavailable  # noqa: E402


class MnoGroup(TyperGroup):
    """The root group.

    - Command groups load lazily: ``mno --help`` lists them from ``GROUPS`` without
      importing them, and ``mno tenant …`` imports only ``mno.cli.tenants``.
    - Domain errors raised anywhere below become ``Error: …`` and an exit code.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:  # the root's flags: no <bool> in help
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(super().list_commands(ctx))
        lazy = [name for name, _, _ in COMMANDS] + [name for name, _, _ in GROUPS]
        every = names + [name for name in lazy if name not in names]
        return sorted(every, key=lambda name: _ORDER.get(name, len(_ORDER)))

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is None and name in _GROUP_INDEX:
            command = _load_group(name)
            self.add_command(command, name)
        elif command is None and name in _COMMAND_INDEX:
            command = _load_command(name)
            self.add_command(command, name)
        return command

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        """Resolve as click does; a mistyped name gets "Did you mean …?" over every
        command, the lazily loaded groups included."""
        try:
            return self._click_resolve_command(ctx, args)
        except Exception as exc:  # typer's own (vendored) UsageError: amended, re-raised
            message = getattr(exc, "message", None)
            if args and isinstance(message, str) and message.startswith("No such command"):
                from difflib import get_close_matches

                matches = get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    names = ", ".join(f"{m!r}" for m in matches)
                    # the vendored UsageError's message, which click prints
                    exc.message = f"{message.rstrip('.')}. Did you mean {names}?"  # type: ignore[attr-defined]
            raise

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """One section per panel (``PANELS``), in panel order, from the one-line helps in
        ``GROUPS`` and ``COMMANDS``: nothing is imported to list them."""
        sections: dict[str, list[tuple[str, str]]] = {panel: [] for panel in PANELS}
        width = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            panel = _PANEL_OF.get(name, _OTHER_PANEL)
            rows = sections.setdefault(panel, [])
            if name in _GROUP_INDEX and name not in self.commands:
                rows.append((name, _GROUP_INDEX[name][1]))
                continue
            if name in _COMMAND_INDEX and name not in self.commands:
                rows.append((name, _COMMAND_INDEX[name][1]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=width)))
        for panel, rows in sections.items():
            if rows:
                with formatter.section(panel):
                    formatter.write_dl(rows)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Refuse an argument that is not valid UTF-8 (bytes the OS hands over as lone
        surrogates) or holds a NUL: no store, file name or output could hold it."""
        for arg in args:
            try:
                arg.encode("utf-8")
                problem = "contains a NUL character" if "\x00" in arg else ""
            except UnicodeEncodeError:
                problem = "is not valid UTF-8"
            if problem:
                from mno.cli import output

                output.error(f"argument {arg!r} {problem}")
                ctx.exit(2)
        return list(super().parse_args(ctx, args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:  # noqa: BLE001 - the single handler
            if _is_click_control(exc):
                raise
            if isinstance(exc, BrokenPipeError):
                _quiet_stdout()
                ctx.exit(0)
            code = handle_error(exc)
            ctx.exit(code)
        finally:
            from mno.cli import remote

            remote.reset()


def _is_click_control(exc: BaseException) -> bool:
    """Usage errors, aborts and exits belong to click (typer may vendor its own copy)."""
    module = type(exc).__module__
    return module.startswith(("click.", "typer._click", "typer."))


def handle_error(exc: BaseException) -> int:
    from mno.cli import output

    if os.environ.get(settings.ENV_DEBUG):
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
        if isinstance(exc, sa_exc.DataError):  # a value the store cannot hold: bad input
            detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            output.error(f"the store refused a value: {detail}")
            return 2
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
    no_headers: Annotated[
        bool, typer.Option("--no-headers", help="Print tables without their header line.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Send the command to this hub over HTTP instead of a local store.",
            envvar=settings.ENV_SERVER,
            show_envvar=True,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="The hub's bearer token (or secret:NAME; default: the secret hub-token).",
            envvar=settings.ENV_TOKEN,
            show_envvar=False,
        ),
    ] = None,
) -> None:
    """mno: the control plane for multi-tenant SaaS platforms."""
    from mno.cli import output

    output.reset()
    output.set_no_headers(no_headers)
    settings.configure(db_url=db, profile=profile, config=config)
    if server:
        from mno.cli import remote

        remote.configure(server, token)


# Command groups, loaded on first use: (name, "module[:attribute]" of a typer app (default
# attribute ``app``), one-line help).
GROUPS: list[tuple[str, str, str]] = [
    ("tenant", "mno.cli.tenants", "Manage tenants (customers) and their contacts."),
    ("lead", "mno.cli.leads", "Manage leads: create, verify and convert them into tenants."),
    ("frontend", "mno.cli.frontends", "Frontends: sign-up sites, their credentials and origins."),
    ("app", "mno.cli.apps", "Manage the apps catalogue and who may use each app."),
    ("connector", "mno.cli.sync:connector_app", "Manage declarative REST connectors."),
    ("connection", "mno.cli.sync:connection_app", "Manage tenants' connections to connectors."),
    ("sync", "mno.cli.sync", "Run Connec sync, list runs, roll a run back."),
    ("record", "mno.cli.records:app", "Read, filter and write canonical records; history."),
    ("user", "mno.cli.users", "Manage users and their personal tokens."),
    ("member", "mno.cli.members", "Manage tenant members and their roles."),
    ("role", "mno.cli.roles", "Custom roles and the permissions they grant."),
    ("team", "mno.cli.teams", "Manage teams and the app instances they open."),
    ("invite", "mno.cli.invites", "Invite users into a tenant."),
    ("sso", "mno.cli.sso", "The hub's single sign-on: OIDC signing keys."),
    ("access", "mno.cli.access", "Check what a member may do in a tenant."),
    ("host", "mno.cli.capacity:host_app", "Docker hosts that run Nex instances."),
    ("instance", "mno.cli.nex", "Hosted app instances (Nex): create, update, back up, terminate."),
    ("edge", "mno.cli.edge", "The HTTPS edge (Caddy) routing every instance's domains."),
    ("secret", "mno.cli.secrets", "Manage secrets (keyring, or a 0600 file on headless hosts)."),
    ("webhook", "mno.cli.webhooks", "Webhook endpoints, deliveries, replay and local tools."),
    ("notify", "mno.cli.notify", "Email notifications: rules and templates."),
    ("audit", "mno.cli.audit_cmd", "Read the audit trail of every mutation."),
    ("events", "mno.cli.events_cmd", "Read platform events (the outbox)."),
    ("report", "mno.cli.reports", "Platform KPIs (Impac): summary, per-area detail, HTML."),
    ("agents", "mno.cli.agents", "Run and inspect the agent daemons."),
    ("db", "mno.cli.db_cmd", "Manage the store: its schema, backups and restores."),
    ("config", "mno.cli.doctor:config_app", "Show the settings in force and where they come from."),
    ("metric", "mno.cli.billing.metrics", "Catalogue: usage metrics and their aggregation."),
    ("coupon", "mno.cli.billing.coupons", "Catalogue: coupons."),
    ("tax-rate", "mno.cli.billing.tax_rates", "Catalogue: tax rates per country and region."),
    ("bundle", "mno.cli.billing.bundles", "Catalogue: bundles of plans and apps as one product."),
    ("subscription", "mno.cli.billing.subscriptions", "Subscriptions of tenants to plans."),
    ("usage", "mno.cli.billing.usage", "Usage events for metered charges."),
    ("charge", "mno.cli.billing.charges", "One-off charges billed by the next run."),
    ("billing", "mno.cli.billing.runs", "Billing runs and plans (mno billing plan ...)."),
    ("invoice", "mno.cli.billing.invoices", "Invoices: issue, pay, void, explain, export."),
    ("ledger", "mno.cli.billing.ledger", "The billing ledger of a tenant."),
]
_GROUP_INDEX = {name: (module, help) for name, module, help in GROUPS}


def _load_group(name: str) -> Any:
    ref, help_text = _GROUP_INDEX[name]
    module, _, attr = ref.partition(":")
    command = typer.main.get_group(getattr(importlib.import_module(module), attr or "app"))
    command.name = name
    command.params = [
        p for p in command.params if p.name not in ("install_completion", "show_completion")
    ]
    if not command.help:
        command.help = help_text
    command.rich_help_panel = _PANEL_OF.get(name)
    _plain_metavars(command)
    return command


_GENERIC = re.compile(r"^<(?:list|tuple|set)\[(.+)\]>$")
_CLASS_NAMES = {"<FileText>": "<file>", "<FileTextWrite>": "<file>", "<FileBinaryRead>": "<file>"}


def _plain_metavars(command: Any) -> None:
    """Help names value types as ``<str>``, never as Python generics (``<list[str]>``) or
    class names (``<FileText>``): repeatable options show their element type, and flags
    show none (not ``<bool>``)."""
    ctx = command.context_class(command, info_name=command.name)
    for param in command.params:
        if param.metavar is not None or not hasattr(param, "display_type"):
            continue
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""  # a flag takes no value: no <bool> after it
            continue
        shown = param.display_type(ctx)
        generic = _GENERIC.match(shown)
        plain = f"<{generic.group(1).lower()}>" if generic else _CLASS_NAMES.get(shown, shown)
        if plain != shown:
            param.metavar = plain
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)


# Top-level commands, loaded on first use: (name, "module:function", one-line help).
COMMANDS: list[tuple[str, str, str]] = [
    ("quickstart", "mno.cli.quickstart:quickstart", "Create an example platform (safe to rerun)."),
    ("validate", "mno.cli.gitops:validate", "Check documents; report every problem at once."),
    ("diff", "mno.cli.gitops:diff", "Show what apply would change (exit 0 none, 1 changes)."),
    ("plan", "mno.cli.gitops:plan", "Save a plan of the changes (-f PATH --out FILE)."),
    ("apply", "mno.cli.gitops:apply", "Apply documents (-f) or a saved plan in one transaction."),
    ("export", "mno.cli.gitops:export", "Write the store as documents."),
    ("schema", "mno.cli.gitops:schema", "Print the JSON Schema of the documents."),
    ("serve", "mno.cli.serve:serve", "Serve the hub API (Developer API and IDM)."),
    ("doctor", "mno.cli.doctor:doctor", "Check this host: store, keys, Docker, agents, SMTP."),
    ("version", "mno.cli.doctor:version", "Print mno's version and schema."),
]
_COMMAND_INDEX = {name: (ref, help) for name, ref, help in COMMANDS}

# The panels of `mno --help`, in order, and the commands and groups each one lists in that
# order (a name in no panel is listed last, under "Other commands"). Loaded groups carry
# their panel as ``rich_help_panel`` too, for TYPER_USE_RICH=1.
PANELS: dict[str, tuple[str, ...]] = {
    "Platform": (
        "quickstart",
        "tenant",
        "lead",
        "frontend",
        "app",
        "validate",
        "diff",
        "plan",
        "apply",
        "export",
        "schema",
    ),
    "Billing": (
        "billing",
        "subscription",
        "usage",
        "charge",
        "invoice",
        "ledger",
        "metric",
        "coupon",
        "tax-rate",
        "bundle",
    ),
    "Nex": ("host", "instance", "edge"),
    "Data": ("connector", "connection", "sync", "record", "report"),
    "Access": ("user", "member", "role", "team", "invite", "access"),
    "Operations": (
        "serve",
        "agents",
        "webhook",
        "notify",
        "audit",
        "events",
        "secret",
        "sso",
        "db",
        "config",
        "doctor",
        "version",
    ),
}
_OTHER_PANEL = "Other commands"
_PANEL_OF = {name: panel for panel, names in PANELS.items() for name in names}
_ORDER = {name: n for n, name in enumerate(_PANEL_OF)}


def _load_command(name: str) -> Any:
    ref, _ = _COMMAND_INDEX[name]
    module, _, attr = ref.partition(":")
    single = typer.Typer()
    single.command(name, rich_help_panel=_PANEL_OF.get(name))(
        getattr(importlib.import_module(module), attr)
    )
    command = typer.main.get_command(single)  # one command: typer returns it as is
    command.name = name
    command.params = [
        p for p in command.params if p.name not in ("install_completion", "show_completion")
    ]
    _plain_metavars(command)
    return command


def _quiet_stdout() -> None:
    """The reader of stdout went away (``mno tenant list | head -1``): point stdout at
    devnull so that nothing left in its buffer fails again at exit, as the Python
    documentation recommends for SIGPIPE."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (an in-memory stream)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def main() -> None:
    """Console-script entry point. A closed pipe on stdout ends the command quietly
    with exit 0, like ``yes | head -1``."""
    try:
        try:
            app()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)
