"""The remote CLI mode: ``mno --server URL --token T …`` sends commands to a hub.

The root callback calls ``configure``; a command with a remote form asks ``hub()`` for
the client (None: work on the local store as usual). While a hub is set, opening the
local store is refused (exit 2, "not available with --server"), so a command without a
remote form can never read or write a store by accident.

The token comes from ``--token``, then ``MNO_TOKEN``, then the secret ``hub-token``
(``mno secret set hub-token``); ``secret:NAME`` names another secret. It is never printed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mno.remote.client import HubClient

TOKEN_SECRET = "hub-token"
REFUSED = "not available with --server (this command needs a local store)"

_server: str | None = None
_token: str | None = None
_hub: HubClient | None = None
_reset_token: object | None = None


def configure(server: str | None, token: str | None) -> None:
    """Record this invocation's hub (``server`` None: the local store). The token is
    resolved when a command first asks for the client: `mno secret set hub-token` works
    with ``MNO_SERVER`` set."""
    global _server, _token, _reset_token
    reset()
    if not server:
        return
    from mno.store import db

    _server, _token = server, token
    _reset_token = db.local_refused.set(REFUSED)


def hub() -> HubClient | None:
    """The hub of this invocation, or None for the local store."""
    global _hub
    if _server is None:
        return None
    if _hub is None:
        from mno.remote.client import HubClient

        _hub = HubClient(_server, _resolve_token(_token))
    return _hub


def _resolve_token(token: str | None) -> str:
    from mno import secrets
    from mno.errors import BadInput, MnoError

    if token and secrets.is_ref(token):
        token = secrets.require(secrets.ref_name(token))
    if not token:
        try:
            token = secrets.get(TOKEN_SECRET)
        except MnoError:  # no keyring on this host: as if the secret were not set
            token = None
    if not token:
        raise BadInput(
            "--server needs a token",
            f"pass --token, set MNO_TOKEN or store it with `mno secret set {TOKEN_SECRET}`",
        )
    return token


def reset() -> None:
    global _hub, _server, _token, _reset_token
    if _hub is not None:
        _hub.close()
    _hub = _server = _token = None
    if _reset_token is not None:
        from mno.store import db

        db.local_refused.reset(_reset_token)  # type: ignore[arg-type]
        _reset_token = None


def unsupported(option: str) -> None:
    """Refuse an option the hub has no form for (exit 2)."""
    from mno.errors import BadInput

    raise BadInput(f"{option} is not available with --server")
