"""Settings: every MNO_* variable name, the home directory, profiles and precedence.

Precedence is flag, then environment, then the profile in ``$MNO_HOME/config.yaml``,
then the documented default. The CLI root callback records flags with ``configure()``;
domain code and agents read resolved values through the functions here.

``config.yaml`` looks like::

    current: default          # optional; MNO_PROFILE or --profile wins
    profiles:
      default:
        db_url: sqlite:////var/lib/mno/mno.db
        apps_domain: apps.example.com
        smtp: {host: 127.0.0.1, port: 25, from: mno@example.com, starttls: false,
               username: mno, password: secret:SMTP_PASSWORD}
        leads: {code_ttl: 24h}
        secrets: {require_keyring: false}

Every command, ``mno --help`` included, imports this module, so ``platformdirs``, ``yaml``
and ``getpass`` are imported inside the functions that need them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from mno.errors import BadInput

# Environment variable names, in one place.
ENV_HOME = "MNO_HOME"
ENV_DB_URL = "MNO_DB_URL"
ENV_PROFILE = "MNO_PROFILE"
ENV_CONFIG = "MNO_CONFIG"
ENV_AGENTS_CONFIG = "MNO_AGENTS_CONFIG"
ENV_ACTOR = "MNO_ACTOR"
ENV_DEBUG = "MNO_DEBUG"
ENV_SERVER = "MNO_SERVER"  # the remote CLI mode: a hub's base URL
ENV_TOKEN = "MNO_TOKEN"  # its bearer token (or secret:NAME)
ENV_WATCH_COUNT = "MNO_WATCH_COUNT"  # --watch stops after this many renders (tests)
ENV_TEST_RESTORE_PAUSE = "MNO_TEST_RESTORE_PAUSE"  # a restore sleeps at this stage (tests)
ENV_MASTER_KEY = "MNO_MASTER_KEY"
ENV_SECRET_PREFIX = "MNO_SECRET_"
ENV_WEBHOOKS_ALLOW_NETWORKS = "MNO_WEBHOOKS_ALLOW_NETWORKS"
ENV_WEBHOOKS_CA_BUNDLE = "MNO_WEBHOOKS_CA_BUNDLE"
ENV_APPS_DOMAIN = "MNO_APPS_DOMAIN"
ENV_NO_COLOR = "NO_COLOR"


@dataclass
class Overrides:
    """Values given as flags on the command line; None means not given."""

    db_url: str | None = None
    profile: str | None = None
    config: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_overrides = Overrides()


def configure(
    *, db_url: str | None = None, profile: str | None = None, config: str | None = None
) -> None:
    """Record the flags of this invocation (replaces any earlier ones)."""
    global _overrides
    _overrides = Overrides(db_url=db_url, profile=profile, config=config)


def current_overrides() -> Overrides:
    """The flags recorded for this invocation (``configure``)."""
    return _overrides


def home() -> Path:
    """The mno home: ``MNO_HOME``, else the user's platform data directory."""
    value = os.environ.get(ENV_HOME)
    if value:
        path = Path(value).expanduser()
    else:
        from platformdirs import user_data_dir

        path = Path(user_data_dir("mno", appauthor=False))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(
            f"cannot use {path} as the mno home: {exc.strerror or exc}",
            f"set {ENV_HOME} to a writable directory",
        ) from exc
    return path


def profile_name() -> str:
    if _overrides.profile:
        return _overrides.profile
    env = os.environ.get(ENV_PROFILE)
    if env:
        return env
    data = _read_config_file()
    return str(data.get("current") or "default")


# the parsed config file, by (path, modification time, size): hot paths (the OIDC token
# endpoint reads token lifetimes per request) stat the file instead of parsing YAML
_config_cache: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def _read_config_file() -> dict[str, Any]:
    """The config file's mapping (read-only: it is shared until the file changes)."""
    path = home() / "config.yaml"
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _config_cache.get(str(path))
    if hit is not None and hit[0] == stamp:
        return hit[1]
    import yaml

    from mno import safeyaml

    try:
        data = safeyaml.safe_load(path.read_text(), str(path)) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping at the top level")
    _config_cache[str(path)] = (stamp, data)
    return data


def profile() -> dict[str, Any]:
    """The selected profile's mapping (empty when there is no config file)."""
    data = _read_config_file()
    profiles = data.get("profiles") or {}
    name = profile_name()
    if name not in profiles:
        explicit = _overrides.profile or os.environ.get(ENV_PROFILE)
        if name == "default" or not explicit:
            return {}
        raise BadInput(f"profile {name!r} is not in {home() / 'config.yaml'}")
    value = profiles[name] or {}
    if not isinstance(value, dict):
        raise BadInput(f"profile {name!r} must be a mapping")
    return value


def profile_value(dotted: str, default: Any = None) -> Any:
    """A value from the selected profile by dotted key, e.g. ``smtp.host``."""
    node: Any = profile()
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def db_url() -> str:
    """The store URL: --db, MNO_DB_URL, profile db_url, else SQLite under MNO_HOME."""
    if _overrides.db_url:
        return _overrides.db_url
    env = os.environ.get(ENV_DB_URL)
    if env:
        return env
    value = profile_value("db_url")
    if value:
        return str(value)
    return f"sqlite:///{home() / 'mno.db'}"


def platform_config_path() -> Path | None:
    """--config, MNO_CONFIG, then $MNO_HOME/platform.yaml; None when none exists."""
    if _overrides.config:
        return Path(_overrides.config)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    candidate = home() / "platform.yaml"
    return candidate if candidate.exists() else None


def agents_config_path() -> Path | None:
    """MNO_AGENTS_CONFIG, the profile's ``agents_config``, then $MNO_HOME/agents.yaml;
    None when none exists. Never the current directory: an agent started from another
    directory runs the same configuration."""
    env = os.environ.get(ENV_AGENTS_CONFIG)
    if env:
        return Path(env).expanduser()
    value = profile_value("agents_config")
    if value:
        return Path(str(value)).expanduser()
    candidate = home() / "agents.yaml"
    return candidate if candidate.exists() else None


def actor() -> str:
    """Who is acting: MNO_ACTOR, else the OS user."""
    value = os.environ.get(ENV_ACTOR)
    if value:
        return value
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (KeyError before Python 3.13)
        return "unknown"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse ``10s``, ``5m``, ``24h``, ``30d`` (a bare number is seconds)."""
    if isinstance(value, timedelta):
        return value
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        match = _DURATION.match(str(value))
        if not match:
            raise BadInput(f"expected a duration like 10s, 5m, 24h or 30d, got {value!r}")
        number, unit = match.groups()
        return timedelta(seconds=float(number) * _UNITS[unit or "s"])
    except (OverflowError, ValueError) as exc:  # past timedelta's range, or NaN
        raise BadInput(f"the duration {value!r} is out of range") from exc
