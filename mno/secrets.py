"""Secrets: one function to read them, with a tested precedence.

``get(NAME)`` looks at ``MNO_SECRET_<NAME>`` first, then the OS keyring (service ``mno``).
Headless hosts, where servers and CI run, often have no usable keyring backend: mno then
keeps secrets in ``$MNO_HOME/secrets.json`` with mode 0600 (like gh's plain-text fallback)
and warns on stderr once per home (a marker file beside it remembers the warning). With
``secrets.require_keyring: true`` in the profile it refuses instead. Config values may
say ``secret:NAME``; ``resolve()`` turns them into the value.

Secret values never reach the store, logs or output: only names are listed.

``keyring`` is imported inside ``_keyring()``: loading it scans its backends and costs a
few hundred milliseconds that commands which never read a secret should not pay.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mno import settings
from mno.errors import BadInput, NotFound, Unavailable

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

SERVICE = "mno"
PREFIX = "secret:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_warned = False


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise BadInput(f"invalid secret name {name!r}", "letters, digits, '_', '.', '-'")
    return name


def env_name(name: str) -> str:
    """``MNO_SECRET_<NAME>``: upper case, other characters as '_'."""
    return settings.ENV_SECRET_PREFIX + re.sub(r"[^A-Z0-9]", "_", name.upper())


def is_ref(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def ref_name(value: str) -> str:
    return check_name(value[len(PREFIX) :])


# -- backends ---------------------------------------------------------------------------


def _keyring() -> KeyringBackend | None:
    """The usable keyring backend, or None on a headless host."""
    try:
        import keyring
        from keyring.backends import chainer, fail
        from keyring.errors import KeyringError
    except ImportError:  # keyring missing or half installed: no keyring
        return None
    try:
        backend = keyring.get_keyring()
    except (
        KeyringError,
        ImportError,  # a backend named in the keyring config that cannot load
        AttributeError,  # a backend class name that its module lacks
        ValueError,
        OSError,
        RuntimeError,
        configparser.Error,
    ):  # a broken keyring setup must not crash mno: no keyring
        return None
    if isinstance(backend, fail.Keyring):
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    if type(backend).__module__.startswith("keyring.backends.null"):
        return None
    return backend


def _require_keyring() -> KeyringBackend:
    """The keyring backend, once ``_use_file()`` has said there is one."""
    backend = _keyring()
    if backend is None:
        raise Unavailable("the keyring backend went away")
    return backend


def _fallback_path() -> Path:
    return settings.home() / "secrets.json"


def _index_path() -> Path:
    return settings.home() / "secrets-index.json"


def backend_name() -> str:
    kr = _keyring()
    if kr is not None:
        return f"keyring ({type(kr).__module__}.{type(kr).__name__})"
    return f"file ({_fallback_path()}, mode 0600)"


def _use_file() -> bool:
    if _keyring() is not None:
        return False
    if settings.profile_value("secrets.require_keyring", False):
        raise Unavailable(
            "no usable keyring backend and the profile sets secrets.require_keyring",
            "install one (e.g. pip install keyrings.alt) and set PYTHON_KEYRING_BACKEND",
        )
    global _warned
    if not _warned:
        _warned = True
        marker = settings.home() / ".secrets-file-warned"
        if not marker.exists():
            sys.stderr.write(
                f"Warning: no keyring backend; secrets are kept in {_fallback_path()} "
                "(mode 0600). This is said once on this host; `mno doctor` repeats it.\n"
            )
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            except OSError:
                pass  # an unwritable home: warned again next time
    return True


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as exc:
        raise Unavailable(f"{path} is not valid JSON") from exc
    return data if isinstance(data, dict) else {}


def _write_private(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


# -- API ----------------------------------------------------------------------------------


def get(name: str, default: str | None = None) -> str | None:
    """The secret's value: environment override, then keyring or the fallback file."""
    check_name(name)
    env = os.environ.get(env_name(name))
    if env is not None:
        return env
    if _use_file():
        value = _read_json(_fallback_path()).get(name)
        return value if value is not None else default
    value = _require_keyring().get_password(SERVICE, name)
    return value if value is not None else default


def require(name: str) -> str:
    value = get(name)
    if value is None:
        raise NotFound(
            f"secret {name} is not set",
            f"run `mno secret set {name}` or set {env_name(name)}",
        )
    return value


def resolve(value: Any) -> Any:
    """``secret:NAME`` → the secret's value; any other value is returned unchanged."""
    if is_ref(value):
        return require(ref_name(value))
    return value


def set(name: str, value: str) -> None:  # noqa: A001 - the natural verb
    check_name(name)
    if value is None or value == "":
        raise BadInput("a secret value must not be empty")
    if _use_file():
        data = _read_json(_fallback_path())
        data[name] = value
        _write_private(_fallback_path(), data)
        return
    _require_keyring().set_password(SERVICE, name, value)
    names = _read_json(_index_path()).get("names", [])
    if name not in names:
        _write_private(_index_path(), {"names": sorted([*names, name])})


def delete(name: str) -> None:
    check_name(name)
    if _use_file():
        data = _read_json(_fallback_path())
        if name not in data:
            raise NotFound(f"secret {name} is not set")
        del data[name]
        _write_private(_fallback_path(), data)
        return
    kr = _require_keyring()
    if kr.get_password(SERVICE, name) is None:
        raise NotFound(f"secret {name} is not set")
    kr.delete_password(SERVICE, name)
    names = [n for n in _read_json(_index_path()).get("names", []) if n != name]
    _write_private(_index_path(), {"names": names})


def list_names() -> list[dict[str, str]]:
    """Names and where each comes from; never values."""
    if _use_file():
        stored = sorted(_read_json(_fallback_path()))
        source = "file"
    else:
        stored = sorted(_read_json(_index_path()).get("names", []))
        source = "keyring"
    rows = [{"name": n, "source": source} for n in stored]
    by_env = {env_name(row["name"]): row for row in rows}
    for var in sorted(os.environ):
        if not var.startswith(settings.ENV_SECRET_PREFIX):
            continue
        if var in by_env:
            by_env[var]["source"] = "environment (overrides " + by_env[var]["source"] + ")"
        else:
            rows.append({"name": var[len(settings.ENV_SECRET_PREFIX) :], "source": "environment"})
    return rows
