"""Platform settings from the platform YAML: Docker hosts, tiers, webhooks, retention, billing,
backups, the HTTPS edge.

The file is found at ``--config FILE``, then ``MNO_CONFIG``, then ``$MNO_HOME/platform.yaml``;
``configs/platform.yaml`` is the example. With none present the defaults below apply.
Each section is a typed model; unknown keys are errors that name the dotted key.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mno import safeyaml, settings
from mno.errors import BadInput


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetentionConfig(Section):
    """How long the housekeeper keeps rows (durations like 30d; 0 keeps forever)."""

    events: str = "30d"
    audit: str = "365d"
    heartbeats: str = "1d"
    ticks: str = "7d"
    sync_runs: str = "90d"  # finished sync runs, with their change rows and conflicts
    sync_pushes: str = "7d"  # sync pushes that reached an end (done, skipped, failed)
    previous_volumes: str = "7d"  # the data volume a Nex restore replaced


class WebhooksConfig(Section):
    """Webhook delivery: networks the SSRF guard lets through (CIDRs), and the PEM file of
    CAs trusted for HTTPS receivers (default: the certifi bundle)."""

    allow_networks: list[str] = Field(default_factory=list)
    ca_bundle: str | None = None


class BillingConfig(Section):
    """Billing policy: invoice issue, due dates and arrears."""

    issuer: str = "default"  # invoice numbering series
    auto_issue: bool = False  # the biller issues the drafts it creates
    due_days: int = Field(default=30, ge=0, le=365)
    arrears_after_days: int = Field(default=15, ge=0, le=365)  # after due_at
    suspend_in_arrears: bool = False  # also suspend the tenant
    run_after_hours: int = Field(default=1, ge=0, le=72)  # wait after the period closes
    # usage that arrives for a period already invoiced: billed on the tenant's next
    # invoice at the prices of that period, or refused
    late_usage: Literal["next_invoice", "reject"] = "next_invoice"


class HostConfig(Section):
    """A Docker host Nex places instances on (with ``runtime: swarm``, a Docker Swarm
    reached through one of its manager nodes)."""

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    base_url: str = "unix:///var/run/docker.sock"  # unix://, tcp:// or ssh:// as docker takes it
    publish_address: str = "127.0.0.1"  # where container ports are published
    memory: str | None = None  # capacity, e.g. 8g; none = unlimited
    max_instances: int | None = Field(default=None, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    timeout: int = Field(default=30, ge=1, le=600)  # seconds per Docker API call
    # docker: containers on this engine; swarm: services on the Docker Swarm whose
    # manager ``base_url`` reaches (mno.nex.runtime_swarm)
    runtime: Literal["docker", "swarm"] = "docker"
    # swarm only: ingress (the routing mesh publishes each service on every node) or
    # host (each task publishes its own port on its node, for engines without IPVS)
    publish_mode: Literal["ingress", "host"] = "ingress"


class BackupSchedule(Section):
    """How often an instance's data volume is backed up to the restic repository."""

    every: str = Field(pattern=r"^[0-9]+(ms|s|m|h|d|w)$")  # e.g. 6h, 1d


RESTIC_BACKENDS = ("local", "sftp", "rest", "s3", "b2", "azure", "gs", "swift", "rclone")


class BackupsConfig(Section):
    """Scheduled, encrypted backups of instances' data volumes with restic.

    ``repository`` is where snapshots go: a local path, ``sftp:user@host:/path`` or
    ``rest:https://host:8000/``; ``password`` must be a ``secret:NAME`` reference (the
    repository's encryption key, never written in plain text). ``every`` is the schedule of
    instances whose app and tier set none (none: only those that do are backed up).
    Retention (``keep_*``) is applied with ``restic forget --prune`` after each backup."""

    repository: str | None = None
    password: str | None = None
    sftp_command: str | None = None  # e.g. "ssh -i KEY -p 2222 backup@host -s sftp"
    host: str = Field(default="mno", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    every: str | None = Field(default=None, pattern=r"^[0-9]+(ms|s|m|h|d|w)$")
    grace: str = Field(default="1h", pattern=r"^[0-9]+(ms|s|m|h|d|w)$")  # late, not overdue
    retry: str = Field(default="15m", pattern=r"^[0-9]+(ms|s|m|h|d|w)$")  # after a failure
    keep_last: int | None = Field(default=None, ge=1)
    keep_hourly: int | None = Field(default=None, ge=1)
    keep_daily: int | None = Field(default=None, ge=1)
    keep_weekly: int | None = Field(default=None, ge=1)
    keep_monthly: int | None = Field(default=None, ge=1)
    keep_yearly: int | None = Field(default=None, ge=1)

    @field_validator("password")
    @classmethod
    def _secret_ref(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("secret:"):
            raise ValueError("must be a secret reference (secret:NAME), not a value")
        return value

    @model_validator(mode="after")
    def _checked(self) -> BackupsConfig:
        if self.repository is not None:
            if not self.repository.strip():
                raise ValueError("repository must not be empty")
            if self.password is None:
                raise ValueError("a repository needs password: secret:NAME")
            scheme = self.repository.split(":", 1)[0] if ":" in self.repository else ""
            if scheme and scheme not in RESTIC_BACKENDS:
                raise ValueError(
                    f"unsupported repository {scheme}: (a path, sftp:user@host:/path or rest:URL)"
                )
        return self


BUILTIN_TIERS = ("pooled", "silo")
TIER_NAME = r"^[a-z][a-z0-9-]{0,9}$"  # stored on the tenant (10 characters at most)
MEMORY = r"^[0-9]+[bkmgBKMG]?$"


class TierConfig(Section):
    """A tier: how ``mno tenant provision`` provisions its tenants and what their Nex
    instances get.

    ``mode``: ``none`` only moves the status; ``docker`` creates the tenant's Nex instances
    (and, with ``isolation: silo``, a network of the tenant's own); ``external`` asks a
    pipeline elsewhere through the ``tenant.provisioning_requested`` event and waits for
    its signed callback. ``isolation`` defaults to the tier's name for ``pooled`` and
    ``silo`` and to ``pooled`` for any other name. ``memory``/``cpus``/``pids`` are the
    limits of the tier's instances (over the app's own; a flag of ``instance create``
    still wins), ``max_instances`` caps the live instances of each tenant, and
    ``labels`` are host labels the tier's instances must be placed on (with the app's); on
    a swarm host they are node labels instead (``node.labels.KEY == VALUE`` constraints),
    and ``spread`` names node labels Swarm spreads the tasks over."""

    isolation: Literal["pooled", "silo"] | None = None
    mode: Literal["none", "docker", "external"] = "none"
    apps: list[str] = Field(default_factory=list)  # Nex apps every tenant of the tier gets
    memory: str | None = Field(default=None, pattern=MEMORY)  # e.g. 512m, 2g
    cpus: Decimal | None = Field(default=None, gt=0, le=512)
    pids: int | None = Field(default=None, ge=1, le=1_000_000)
    max_instances: int | None = Field(default=None, ge=0)  # live instances per tenant
    labels: dict[str, str] = Field(default_factory=dict)  # hosts' labels to match
    # on a swarm: node labels to spread the tier's tasks over (e.g. [zone]); the labels
    # above become node constraints there (node.labels.KEY == VALUE)
    spread: list[str] = Field(default_factory=list)
    callback_ttl: str = "20m"  # how long the one-time callback secret is valid
    callback_window: str = "5m"  # accepted clock skew of x-timestamp
    backup: BackupSchedule | None = None  # the tier's instances' backup schedule


class EdgeConfig(Section):
    """The HTTPS edge: a Caddy server mno configures through its admin API (``mno edge``).

    ``tls`` says where certificates of domains without an operator-supplied one
    (``mno instance domain cert set``) come from: ``acme`` (automatic HTTPS, e.g. Let's
    Encrypt; needs ports 80/443 reachable from the internet), ``internal`` (Caddy's own
    CA, for networks ACME cannot reach) or ``manual`` (none: only operator certificates)."""

    admin: str = Field(default="http://127.0.0.1:2019", pattern=r"^http://[^/\s]+:[0-9]+/?$")
    listen: str = ""  # address the HTTPS and HTTP servers bind ("" = every interface)
    https_port: int = Field(default=443, ge=1, le=65535)
    http_port: int = Field(default=80, ge=1, le=65535)
    redirect_http: bool = True  # answer http:// with a redirect to https://
    tls: Literal["acme", "internal", "manual"] = "acme"
    acme_email: str | None = None
    acme_ca: str | None = None  # ACME directory URL (default: Let's Encrypt)
    data_dir: str | None = None  # Caddy's storage (certificates, internal CA); $MNO_HOME/edge
    caddy: str = "caddy"  # the binary `mno edge run` starts
    timeout: float = Field(default=10.0, gt=0, le=300)  # seconds per admin API call


class ScaleOutConfig(Section):
    """A command run when placement fails for lack of room (``mno.nex.capacity``): at
    most once per ``cooldown``, killed after ``timeout``."""

    command: list[str] = Field(min_length=1)  # argv, no shell: e.g. [terraform, apply, ...]
    timeout: str = Field(default="300s", pattern=r"^[0-9]+(ms|s|m|h|d)?$")
    cooldown: str = Field(default="10m", pattern=r"^[0-9]+(ms|s|m|h|d)?$")
    workdir: str | None = None  # where it runs (default: the current directory)


class CapacityConfig(Section):
    """Headroom thresholds and the scale-out hook (``mno host capacity``). A host is low
    when its free memory is under ``low_memory_pct`` percent of its capacity or at most
    ``low_slots`` instance slots are free (hosts with ``max_instances``)."""

    low_memory_pct: int = Field(default=15, ge=0, le=100)
    low_slots: int = Field(default=2, ge=0)
    scale_out: ScaleOutConfig | None = None


class PlatformConfig(Section):
    apps_domain: str = Field(default="apps.localhost", pattern=r"^[a-z0-9.-]+$")
    hosts: list[HostConfig] = Field(default_factory=list)
    tiers: dict[str, TierConfig] = Field(default_factory=dict)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    backups: BackupsConfig = Field(default_factory=BackupsConfig)
    edge: EdgeConfig | None = None  # none: no HTTPS edge (the edge agent idles)
    capacity: CapacityConfig = Field(default_factory=CapacityConfig)

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, tiers: dict[str, TierConfig]) -> dict[str, TierConfig]:
        for name, tier in tiers.items():
            if not re.match(TIER_NAME, name):
                raise ValueError(
                    f"tier name {name!r}: lowercase letters, digits and '-', 10 at most"
                )
            if tier.isolation is None:
                tier.isolation = name if name in BUILTIN_TIERS else "pooled"  # type: ignore[assignment]
        return tiers

    @model_validator(mode="after")
    def _unique_hosts(self) -> PlatformConfig:
        names = [h.name for h in self.hosts]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"host {name!r} is listed twice")
        return self

    def tier_names(self) -> list[str]:
        """The tiers a tenant may be in: ``pooled``, ``silo`` and every declared one."""
        return list(dict.fromkeys([*BUILTIN_TIERS, *self.tiers]))

    def tier(self, name: str) -> TierConfig:
        """The settings of tier ``name`` (``pooled`` and ``silo`` have defaults when not
        declared; another undeclared name gets the defaults of ``pooled``)."""
        declared = self.tiers.get(name)
        if declared is not None:
            return declared
        return TierConfig(isolation="silo" if name == "silo" else "pooled")


_cache: dict[str, PlatformConfig] = {}


def load(path: Path | None = None) -> PlatformConfig:
    """The platform settings (defaults when no file is configured)."""
    path = path or settings.platform_config_path()
    if path is None:
        return PlatformConfig()
    key = str(path.resolve()) if path.exists() else str(path)
    if key in _cache:
        return _cache[key]
    if not path.exists():
        raise BadInput(f"platform config {path} does not exist")
    config = parse(path.read_text(), str(path))
    _cache[key] = config
    return config


def parse(text: str, source: str = "platform.yaml") -> PlatformConfig:
    try:
        data: Any = safeyaml.safe_load(text, source) or {}
    except yaml.YAMLError as exc:
        raise BadInput(f"{source}: not valid YAML: {exc}") from exc
    if isinstance(data, dict) and data.get("kind") == "Platform":
        data = data.get("spec") or {}
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{source} {where}: {first['msg']}") from exc


def clear_cache() -> None:
    _cache.clear()
