"""mno edge and mno instance domain cert: the HTTPS edge (Caddy) and its certificates.

The domain modules are imported inside the commands (see ``mno.cli.nex``).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, done, info, render, render_list, success
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm
from mno.errors import BadInput

app = typer.Typer(
    help="The HTTPS edge: Caddy routing every instance's domains (mno edge run|sync|status).",
    no_args_is_help=True,
)
cert_app = typer.Typer(
    help="Operator-supplied TLS certificates for instance domains (keys kept sealed).",
    no_args_is_help=True,
)

ROUTE_COLUMNS = ["instance", "hosts", "upstream"]
CERT_COLUMNS = ["domain", "names", "not_after", "fingerprint"]


@app.command("sync")
def sync(output: OutputOpt = Format.table) -> None:
    """Load the routes and certificates from the store into Caddy now (if they changed)."""
    from mno.nex import edge

    result = edge.sync()
    state = "loaded" if result.changed else "already up to date"
    done(
        result.as_dict(),
        f"edge {state}: {result.routes} routes, {result.hosts} hosts, "
        f"{result.certificates} certificates",
        output,
    )


@app.command("status")
def status(output: OutputOpt = Format.table) -> None:
    """Whether Caddy answers and serves exactly the routes the store asks for."""
    from mno.nex import edge

    result = edge.status()
    data = result.as_dict()
    if output in (Format.table, Format.wide):
        state = "in sync" if result.in_sync else "NOT in sync (run `mno edge sync`)"
        if not result.reachable:
            state = f"unreachable: {result.error}"
        info(f"edge {result.admin} ({result.tls}): {state}; {result.certificates} certificates")
        rows = [r | {"hosts": ", ".join(r["hosts"])} for r in result.routes]
        render(rows, output, columns=ROUTE_COLUMNS, empty="No routes.")
    else:
        render(data, output)
    if not result.reachable:
        raise typer.Exit(3)


@app.command("run")
def run(
    no_sync: Annotated[
        bool, typer.Option("--no-sync", help="Start Caddy without loading the routes.")
    ] = False,
) -> None:
    """Start Caddy in the foreground for the edge, then load the routes from the store."""
    from mno.nex import edge

    proc = edge.launch()

    def stop(signum: int, frame: Any) -> None:
        proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        edge.wait_admin(proc=proc)
        success(f"Caddy is running (pid {proc.pid}); admin API at {edge.edge_config().admin}")
        if not no_sync:
            result = edge.sync()
            success(f"loaded {result.routes} routes, {result.hosts} hosts")
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    raise typer.Exit(code if code > 0 else 0)


Domain = Annotated[str, typer.Argument(help="e.g. crm.acme.com, or *.apps.example.com.")]


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the {what} file {path}: {type(exc).__name__}") from None


@cert_app.command("set")
def cert_set(
    domain: Domain,
    cert: Annotated[
        Path, typer.Option("--cert", help="PEM certificate chain, leaf first.", show_default=False)
    ],
    key: Annotated[
        Path, typer.Option("--key", help="PEM private key (unencrypted).", show_default=False)
    ],
    output: OutputOpt = Format.table,
) -> None:
    """Serve this certificate for DOMAIN (set again to rotate; no Caddy restart)."""
    from mno.nex import certs
    from mno.store.db import session_scope

    cert_text, key_text = _read(cert, "certificate"), _read(key, "key")
    with session_scope() as s:
        view = certs.set_cert(s, domain, cert_text, key_text)
    done(view, f"certificate for {view['domain']} set (expires {view['not_after']})", output)


@cert_app.command("list")
def cert_list(
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """The certificates kept for domains: names, expiry, fingerprint (never keys)."""
    from mno.nex import certs
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = certs.list_certs(s)
    if output in (Format.table, Format.wide):
        rows = [r | {"names": ", ".join(r["names"])} for r in rows]
    render_list(
        rows,
        "domain",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=CERT_COLUMNS,
        empty="No certificates.",
    )


@cert_app.command("remove")
def cert_remove(domain: Domain, yes: YesOpt = False, output: OutputOpt = Format.table) -> None:
    """Forget DOMAIN's certificate; the edge's tls mode serves it again."""
    from mno.nex import certs
    from mno.store.db import session_scope

    confirm(f"remove the certificate of {domain}", yes)
    with session_scope() as s:
        view = certs.remove(s, domain)
    done(view, f"certificate for {view['domain']} removed", output)
