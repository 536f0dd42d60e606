"""mno sso: the OpenID Connect provider's signing keys; mno app sso: apps as OIDC clients."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, done, render, render_list, success
from mno.cli.params import AfterOpt, AllOpt, LimitOpt, YesOpt, confirm

app = typer.Typer(help="The hub's single sign-on: OIDC signing keys.", no_args_is_help=True)
keys_app = typer.Typer(help="OIDC signing keys (RS256, ES256).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

client_app = typer.Typer(
    help="Let an app sign its users in through the hub (OpenID Connect).", no_args_is_help=True
)

KEY_COLUMNS = ["kid", "alg", "status", "created_at", "retired_at", "publish_until"]


@keys_app.command("list")
def keys_list(
    limit: LimitOpt = 100,
    after: AfterOpt = None,
    all_: AllOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """List signing keys: active ones sign, retired ones stay published until pruned."""
    from mno.sso import keys
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        rows = keys.list_keys(s)
    render_list(
        rows,
        "kid",
        output,
        limit=limit,
        after=after,
        all_=all_,
        columns=KEY_COLUMNS,
        empty="No signing keys yet (made on first use).",
    )


@keys_app.command("rotate")
def keys_rotate(output: OutputOpt = Format.table) -> None:
    """Make new active keys; old ones stay in JWKS until their tokens have expired."""
    from mno.sso import keys
    from mno.store.db import session_scope

    with session_scope() as s:
        rows = [keys.as_dict(r) for r in keys.rotate(s)]
    if output is Format.table:
        success("new signing keys are active; retired keys stay published until they expire")
    render(rows, output, columns=KEY_COLUMNS)


@keys_app.command("prune")
def keys_prune(yes: YesOpt = False, output: OutputOpt = Format.table) -> None:
    """Remove retired keys whose tokens have all expired from the store and JWKS."""
    from mno.sso import keys
    from mno.store.db import session_scope

    confirm("remove retired signing keys past their tokens' lifetime", yes)
    with session_scope() as s:
        count = keys.prune(s)
    done({"pruned": count}, f"{count} retired key(s) removed", output)


RedirectOpt = Annotated[
    list[str],
    typer.Option("--redirect-uri", help="Redirect URI (exact match; repeatable)."),
]


@client_app.command("enable")
def enable(
    code: Annotated[str, typer.Argument(help="App code.")],
    redirect_uri: RedirectOpt,
    logout_uri: Annotated[
        list[str] | None,
        typer.Option("--post-logout-uri", help="Where logout may return (repeatable)."),
    ] = None,
    public: Annotated[
        bool, typer.Option("--public", help="A public client: no secret, PKCE S256 required.")
    ] = False,
    id_token_alg: Annotated[str, typer.Option(help="RS256 or ES256.")] = "RS256",
    jwks: Annotated[
        Path | None,
        typer.Option(
            "--jwks",
            help="The client's public keys (a JWKS JSON file): private_key_jwt, no secret.",
        ),
    ] = None,
    jwks_uri: Annotated[
        str | None,
        typer.Option(
            "--jwks-uri", help="Where the hub fetches the client's public keys: private_key_jwt."
        ),
    ] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Make an app an OIDC client; prints the client id and secret (shown once; none with keys)."""
    import json

    from mno.errors import BadInput
    from mno.sso import clients
    from mno.store.db import session_scope

    keys = None
    if jwks is not None:
        try:
            keys = json.loads(jwks.read_text())
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read the JWKS file {jwks}: {exc}") from exc
    with session_scope() as s:
        issued = clients.enable(
            s, code, redirect_uri, public=public, logout_uris=logout_uri,
            id_token_alg=id_token_alg, jwks=keys, jwks_uri=jwks_uri,
        )  # fmt: skip
        data = clients.as_dict(issued.client, issued.app)
    data["client_secret"] = issued.secret
    if output is Format.table:
        shown = "; the secret is shown only this once" if issued.secret else ""
        success(f"{code} signs users in through the hub{shown}")
    render(data, output)


@client_app.command("show")
def show(
    code: Annotated[str, typer.Argument(help="App code.")], output: OutputOpt = Format.table
) -> None:
    """Show an app's client id, type and redirect URIs (never the secret)."""
    from mno.sso import clients
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        row, found = clients.of_app(s, code)
        data = clients.as_dict(row, found)
    render(data, output)


@client_app.command("disable")
def disable(
    code: Annotated[str, typer.Argument(help="App code.")], output: OutputOpt = Format.table
) -> None:
    """Stop an app signing users in through the hub (its secret is forgotten)."""
    from mno.sso import clients
    from mno.store.db import session_scope

    with session_scope() as s:
        row = clients.disable(s, code)
    done({"app": code, "client_id": row.client_id, "enabled": False}, f"{code}: SSO off", output)


@client_app.command("rotate-secret")
def rotate_secret(
    code: Annotated[str, typer.Argument(help="App code.")], output: OutputOpt = Format.table
) -> None:
    """Issue a new client secret (printed once); the old one stops working at once."""
    from mno.sso import clients
    from mno.store.db import session_scope

    with session_scope() as s:
        issued = clients.rotate_secret(s, code)
    data = {"app": code, "client_id": issued.client.client_id, "client_secret": issued.secret}
    if output is Format.table:
        success(f"new client secret for {code}; it is shown only this once")
    render(data, output)
