"""``mno doctor`` and ``mno config view``: what this host sees, and how to fix it.

``checks()`` looks at each part mno needs and says ``ok``, ``warn`` (works, but not as a
production platform should) or ``fail`` (something will not work), each with the fix:
the store (reachable, schema current), its last backup (warned when older than a day),
the master key, the secret backend, the Docker hosts, the agent processes and the SMTP
server. ``effective_settings()`` lists the
settings in force and where each came from (flag, environment, profile or default),
with passwords in URLs hidden.

Each check catches the errors of the part it looks at and reports them as its outcome;
no check raises.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from mno import clock, settings
from mno.errors import MnoError

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def checks(*, probe_hosts: bool = True) -> list[Check]:
    """Every check, in the order a fix usually needs them."""
    store = check_store()
    out = [store, check_master_key(), check_secret_backend()]
    if store.status == FAIL:
        out.append(Check("agents", WARN, "not checked: the store is not usable"))
        out.append(Check("docker hosts", WARN, "not checked: the store is not usable"))
    else:
        out.append(check_backup())
        out.append(check_agents())
        out.extend(check_hosts() if probe_hosts else [])
    out.append(check_smtp())
    return out


def check_store() -> Check:
    from mno.store import db

    url = settings.db_url()
    shown = db.redact(url)
    if db.is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not os.path.exists(path):
            return Check("store", OK, f"{shown} (created on first use)")
    try:
        engine = db.get_engine(url)
        current = db.store_revisions(engine)
        heads = db.code_heads()
    except MnoError as exc:
        return Check("store", FAIL, f"{shown}: {exc.message}", exc.hint or "")
    except Exception as exc:  # any driver error: reported as this check's outcome
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Check("store", FAIL, f"{shown}: {reason}", "check the URL and that the server runs")
    if not current:
        return Check("store", FAIL, f"{shown} has no mno schema", "run `mno db upgrade`")
    if current - db.all_revisions():
        return Check("store", FAIL, f"{shown} is ahead of this mno", "upgrade mno")
    if current != heads:
        return Check("store", FAIL, f"{shown} is behind this mno", "run `mno db upgrade`")
    return Check("store", OK, f"{shown}, schema current")


def check_backup(max_age: timedelta = timedelta(days=1)) -> Check:
    from mno.store import backup, db

    try:
        at = backup.last_backup(db.get_engine())
    except MnoError as exc:
        return Check("backup", FAIL, exc.message, exc.hint or "")
    except Exception as exc:  # any driver error: reported as this check's outcome
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return Check("backup", WARN, f"cannot read the backup history: {reason}")
    hint = "run `mno db backup --out FILE` (daily, e.g. from cron) and keep the file off this host"
    if at is None:
        return Check("backup", WARN, "the store was never backed up", hint)
    age = clock.now() - at
    stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if age > max_age:
        hours = int(age.total_seconds() // 3600)
        return Check("backup", WARN, f"the last backup is {hours} h old (taken {stamp})", hint)
    return Check("backup", OK, f"last backup taken {stamp}")


def check_master_key() -> Check:
    from mno import crypto, secrets

    if os.environ.get(settings.ENV_MASTER_KEY):
        source = settings.ENV_MASTER_KEY
    else:
        try:
            found = secrets.get(crypto.MASTER_KEY_NAME)
        except MnoError as exc:
            return Check("master key", FAIL, exc.message, exc.hint or "")
        if not found:
            return Check(
                "master key",
                WARN,
                "no master key yet: one is created when a secret is first sealed",
                "on a host joining a store that already holds sealed secrets, " + crypto.COPY_HINT,
            )
        source = "the secret store"
    try:
        crypto.decrypt(crypto.encrypt("doctor"))
    except MnoError as exc:
        return Check("master key", FAIL, f"from {source}: {exc.message}", exc.hint or "")
    return Check("master key", OK, f"from {source}")


def check_secret_backend() -> Check:
    from mno import secrets

    name = secrets.backend_name()
    if name.startswith("keyring"):
        return Check("secrets", OK, name)
    return Check(
        "secrets",
        WARN,
        name,
        "install a keyring backend (Secret Service, or keyrings.alt) for production hosts",
    )


def check_agents(stale_after: timedelta = timedelta(seconds=30)) -> Check:
    import sqlalchemy as sa

    from mno.store.db import session_scope
    from mno.store.models.agents import Heartbeat

    try:
        with session_scope(write=False) as s:
            rows = s.execute(sa.select(Heartbeat)).scalars().all()
    except MnoError as exc:
        return Check("agents", FAIL, exc.message, exc.hint or "")
    now = clock.now()
    alive = [
        r
        for r in rows
        if now - r.last_beat <= max(stale_after, timedelta(seconds=3 * r.interval_s))
    ]
    if not alive:
        return Check(
            "agents",
            WARN,
            "no `mno agents run` process is alive: nothing provisions, delivers or bills",
            "start `mno agents run` on one or more hosts (see `mno agents systemd`)",
        )
    names = sorted({a for r in alive for a in r.agents})
    hosts = sorted({r.host for r in alive})
    return Check(
        "agents",
        OK,
        f"{len(alive)} process(es) alive on {', '.join(hosts)}: {', '.join(names)}",
    )


def check_hosts() -> list[Check]:
    from mno import platform
    from mno.nex import hosts
    from mno.store.db import session_scope

    try:
        with session_scope(write=False) as s:
            configured = hosts.configured(platform.load(), s)
    except MnoError as exc:
        return [Check("docker hosts", FAIL, exc.message, exc.hint or "")]
    out = []
    for name, result in sorted(hosts.probe(configured).items()):
        if result.reachable:
            out.append(Check(f"docker host {name}", OK, f"Docker {result.version}"))
        else:
            out.append(
                Check(
                    f"docker host {name}",
                    FAIL,
                    result.error or "unreachable",
                    "start Docker there, or fix its URL (`mno host list`)",
                )
            )
    return out


def check_smtp(timeout: float = 3.0) -> Check:
    from mno import mail

    try:
        cfg = mail.config()
    except MnoError as exc:
        return Check("smtp", FAIL, exc.message, exc.hint or "")
    if cfg is None:
        return Check(
            "smtp",
            WARN,
            "not configured: invitations, lead codes and notifications are not emailed",
            "set smtp.host in the profile ($MNO_HOME/config.yaml)",
        )
    try:
        with socket.create_connection((cfg.host, cfg.port), timeout=timeout):
            pass
    except OSError as exc:
        return Check(
            "smtp", FAIL, f"{cfg.host}:{cfg.port} does not answer ({exc})", "check smtp.host/port"
        )
    return Check("smtp", OK, f"{cfg.host}:{cfg.port} answers")


# -- effective settings -----------------------------------------------------------------


def effective_settings() -> list[dict[str, Any]]:
    """The settings in force, each with its value and where it came from."""
    from mno.store.db import redact

    over = settings.current_overrides()
    config_file = settings.home() / "config.yaml"

    def source(flag: str | None, flag_name: str, env: str, profile_key: str | None) -> str:
        # an option with envvar= hands the environment's value in as if it were the flag
        if os.environ.get(env) and (not flag or flag == os.environ[env]):
            return f"environment {env}"
        if flag:
            return f"flag {flag_name}"
        if profile_key and settings.profile_value(profile_key) is not None:
            return f"profile {settings.profile_name()} ({config_file})"
        return "default"

    platform_path = settings.platform_config_path()
    agents_path = settings.agents_config_path()
    rows = [
        {
            "setting": "home",
            "value": str(settings.home()),
            "source": f"environment {settings.ENV_HOME}"
            if os.environ.get(settings.ENV_HOME)
            else "default",
        },
        {
            "setting": "profile",
            "value": settings.profile_name(),
            "source": source(over.profile, "--profile", settings.ENV_PROFILE, None)
            if over.profile or os.environ.get(settings.ENV_PROFILE)
            else ("current in " + str(config_file) if config_file.exists() else "default"),
        },
        {
            "setting": "db_url",
            "value": redact(settings.db_url()),
            "source": source(over.db_url, "--db", settings.ENV_DB_URL, "db_url"),
        },
        {
            "setting": "platform config",
            "value": str(platform_path) if platform_path else "(none: built-in defaults)",
            "source": source(over.config, "--config", settings.ENV_CONFIG, None)
            if over.config or os.environ.get(settings.ENV_CONFIG)
            else "default",
        },
        {
            "setting": "agents config",
            "value": str(agents_path) if agents_path else "(none: every agent on its defaults)",
            "source": source(None, "--file", settings.ENV_AGENTS_CONFIG, "agents_config"),
        },
        {
            "setting": "actor",
            "value": settings.actor(),
            "source": f"environment {settings.ENV_ACTOR}"
            if os.environ.get(settings.ENV_ACTOR)
            else "default (the OS user)",
        },
    ]
    for key in ("apps_domain", "smtp.host", "webhooks.allow_networks"):
        value = settings.profile_value(key)
        if value is not None:
            rows.append(
                {
                    "setting": key,
                    "value": value,
                    "source": f"profile {settings.profile_name()} ({config_file})",
                }
            )
    return rows
