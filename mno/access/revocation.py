"""The access stamp: how caches learn that access changed on this host.

Every access write (a token revoked, a user disabled, a role changed, a key rotated...)
calls ``bump(session)``. After that transaction commits, the in-process counter moves
and ``$MNO_HOME/access.stamp`` is replaced with a new random value. Caches call
``current()`` on each lookup and drop everything when it changed: reading the stamp is
one small file read, so a cached answer never outlives a revocation made by any process
on the same host (the API server, the CLI, an agent) that shares ``MNO_HOME``.

Other hosts (and processes with another ``MNO_HOME``) hear of it through a wake-up on
the ``access`` channel (``mno.store.wake``: a PostgreSQL ``NOTIFY`` sent with the commit,
on SQLite a datagram to the processes of the host): ``listen(db_url)``, which every
``mno serve`` worker starts, moves the in-process counter when one arrives, and once
after each reconnect of its listener. Only a process that cannot listen falls back to
the cache TTL.
"""

from __future__ import annotations

import os
import secrets
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import event

from mno import settings
from mno.store import wake

if TYPE_CHECKING:
    from sqlmodel import Session

_lock = threading.Lock()
_local = 0
_HOOK = "_mno_access_bump"
WAKE = "access"  # the wake-up channel of access changes (mno.store.wake)


_paths: dict[str | None, str] = {}


def _path() -> str:
    env = os.environ.get(settings.ENV_HOME)
    path = _paths.get(env)
    if path is None:
        path = _paths[env] = str(settings.home() / "access.stamp")
    return path


def current() -> tuple[int, bytes]:
    """(in-process counter, host stamp); compare with the value a cache was filled at."""
    try:
        with open(_path(), "rb") as fh:
            stamp = fh.read(64)
    except FileNotFoundError:
        stamp = b""
    return _local, stamp


def moved() -> None:
    """Tell the caches of this process that access changed (a wake-up arrived)."""
    global _local
    with _lock:
        _local += 1


def signal() -> None:
    """Tell every cache on this host that access changed (call after commit)."""
    moved()
    path = _path()
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "wb") as fh:
        fh.write(secrets.token_hex(16).encode())
    os.replace(tmp, path)


def bump(session: Session) -> None:
    """Signal once the caller's transaction commits (nothing happens on rollback)."""
    if session.info.get(_HOOK):
        return

    session.info[_HOOK] = True
    wake.notify(session, WAKE, at_commit=True)  # other hosts' caches, at the commit

    def _after_commit(_s: Any) -> None:
        session.info.pop(_HOOK, None)
        signal()

    def _after_rollback(_s: Any, _previous: Any) -> None:  # (session, transaction)
        session.info.pop(_HOOK, None)

    event.listen(session, "after_commit", _after_commit, once=True)
    event.listen(session, "after_soft_rollback", _after_rollback, once=True)


_listeners: dict[tuple[int, str], wake.Listener] = {}


def listen(db_url: str) -> wake.Listener:
    """Start (once per process and store) a listener that moves this process's counter on
    every access change made elsewhere (any host on PostgreSQL, this host on SQLite)."""
    key = (os.getpid(), db_url)
    with _lock:
        listener = _listeners.get(key)
        if listener is None:
            listener = wake.Listener(db_url, name="mno-serve access")
            listener.subscribe(WAKE, moved)
            _listeners[key] = listener.start()
    return listener
