"""mno secret: set, list, delete secrets; show the backend; create the master key.

``mno.secrets`` and ``mno.crypto`` are imported inside the commands: keyring and
cryptography are slow to load and `mno secret --help` needs neither.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, done, render, render_list
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm

app = typer.Typer(
    help="Manage secrets (keyring, or a 0600 file on headless hosts).", no_args_is_help=True
)


@app.command("set")
def set_(
    name: Annotated[str, typer.Argument(help="Secret name, referenced as secret:NAME.")],
    from_stdin: Annotated[
        bool, typer.Option("--from-stdin", help="Read the value from standard input.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Store a secret: prompts on a terminal, reads standard input when it is a pipe
    (or with --from-stdin)."""
    from mno import secrets

    if from_stdin or not sys.stdin.isatty():
        value = sys.stdin.read().rstrip("\r\n")
    else:
        value = typer.prompt(f"Value for {name}", hide_input=True, confirmation_prompt=True)
    secrets.set(name, value)
    done({"name": name, "stored": True}, f"secret {name} stored", output)


@app.command("list")
def list_(
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List secret names and where they come from (never values)."""
    from mno import secrets

    render_list(
        secrets.list_names(),
        "name",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=["name", "source"],
        empty="No secrets.",
    )


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(help="Secret name.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Delete a secret."""
    from mno import secrets

    confirm(f"delete secret {name}", yes)
    secrets.delete(name)
    done({"name": name, "deleted": True}, f"secret {name} deleted", output)


@app.command("backend")
def backend(output: OutputOpt = Format.table) -> None:
    """Show which backend keeps secrets."""
    from mno import secrets

    render({"backend": secrets.backend_name()}, output)


@app.command("init-master-key")
def init_master_key(
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing key (stored secrets break).")
    ] = False,
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Create the master key that encrypts secrets kept in the store ahead of time (it is
    also created when a secret is first sealed); --force replaces it after a confirmation."""
    from mno import crypto

    if force:
        confirm("replace the master key (secrets stored with the old key stop working)", yes)
    crypto.init_master_key(force=force)
    done(
        {"name": crypto.MASTER_KEY_NAME, "created": True},
        "master key created; copy it to every agent host with `mno secret export-master-key`",
        output,
    )


@app.command("export-master-key")
def export_master_key(yes: YesOpt = False, output: OutputOpt = Format.table) -> None:
    """Print the master key, to copy it to another host that shares this store
    (`mno secret export-master-key --yes | ssh HOST mno secret import-master-key`)."""
    from mno import crypto
    from mno.errors import NotFound

    confirm("print the master key (anyone who reads it can open every stored secret)", yes)
    key = crypto.current_key()
    if not key:
        raise NotFound("no master key on this host", "it is created when a secret is first sealed")
    if output in (Format.json, Format.yaml):
        render({"name": crypto.MASTER_KEY_NAME, "key": key}, output)
    else:
        typer.echo(key)


@app.command("import-master-key")
def import_master_key(
    force: Annotated[
        bool, typer.Option("--force", help="Replace another key (secrets sealed here break).")
    ] = False,
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Store the master key copied from another host: reads standard input when it is a
    pipe, or prompts."""
    from mno import crypto

    if force:
        confirm("replace this host's master key (secrets sealed with it stop working)", yes)
    if not sys.stdin.isatty():
        key = sys.stdin.read()
    else:
        key = typer.prompt("Master key", hide_input=True)
    changed = crypto.import_master_key(key, force=force)
    done(
        {"name": crypto.MASTER_KEY_NAME, "imported": changed},
        "master key stored" if changed else "this host already had that master key",
        output,
    )
