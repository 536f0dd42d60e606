"""mno user password / mno user mfa: how a person signs in at the hub."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mno.cli.output import Format, OutputOpt, console, done, render, success
from mno.cli.params import YesOpt, confirm

password_app = typer.Typer(help="Set a user's hub sign-in password.", no_args_is_help=True)
mfa_app = typer.Typer(help="Enable or disable a user's TOTP second factor.", no_args_is_help=True)


@password_app.command("set")
def password_set(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Set or change a user's password (prompted twice); their hub sessions end."""
    from mno.access import users
    from mno.sso import passwords
    from mno.store.db import session_scope

    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    passwords.check_password(password)
    with session_scope() as s:
        data = users.as_dict(passwords.set_password(s, email, password))
    data = {"email": data["email"], "password": "set"}
    done(data, f"password of {data['email']} set", output)


@mfa_app.command("enable")
def mfa_enable(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    qr: Annotated[bool, typer.Option("--qr/--no-qr", help="Print a QR code of the URI.")] = True,
    output: OutputOpt = Format.table,
) -> None:
    """Give a user a TOTP secret; its otpauth URI and QR code are shown only this once."""
    from mno.sso import mfa
    from mno.store.db import session_scope

    with session_scope() as s:
        enabled = mfa.enable(s, email)
    data = {"email": enabled.user.email, "mfa": "totp", "otpauth_uri": enabled.uri}
    if output is not Format.table:
        render(data, output)
        return
    success(f"second factor enabled for {enabled.user.email}; the URI is shown only this once")
    if qr:
        console().print(_qr(enabled.uri), highlight=False, markup=False, soft_wrap=True)
    console().print(enabled.uri, highlight=False, markup=False, soft_wrap=True)


def _qr(uri: str) -> str:
    import io

    import qrcode  # type: ignore[import-untyped]

    code = qrcode.QRCode(border=2)
    code.add_data(uri)
    code.make(fit=True)
    buffer = io.StringIO()
    code.print_ascii(out=buffer, invert=True)
    return buffer.getvalue().rstrip("\n")


@mfa_app.command("disable")
def mfa_disable(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    yes: YesOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Remove a user's second factor: they sign in with their password alone."""
    confirm(f"remove the second factor of {email}", yes)
    from mno.access import users
    from mno.sso import mfa
    from mno.store.db import session_scope

    with session_scope() as s:
        data = users.as_dict(mfa.disable(s, email))
    done({"email": data["email"], "mfa": None}, f"second factor of {data['email']} removed", output)
