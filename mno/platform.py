"""Platform settings from the platform YAML: Docker hosts, tiers, webhooks, retention, billing,
the HTTPS edge.

The file is found at ``--config FILE``, then ``MNO_CONFIG``, then ``$MNO_HOME/platform.yaml``;
``configs/platform.yaml`` is the example. With none present the defaults below apply.
Each section is a typed model; unknown keys are errors that name the dotted key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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
    """A Docker host Nex places instances on."""

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    base_url: str = "unix:///var/run/docker.sock"  # unix://, tcp:// or ssh:// as docker takes it
    publish_address: str = "127.0.0.1"  # where container ports are published
    memory: str | None = None  # capacity, e.g. 8g; none = unlimited
    max_instances: int | None = Field(default=None, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    timeout: int = Field(default=30, ge=1, le=600)  # seconds per Docker API call


class TierConfig(Section):
    """How ``mno tenant provision`` provisions a tier's tenants.

    ``none`` only moves the status; ``docker`` creates the tenant's Nex instances (and a
    network for silo tenants); ``external`` asks a pipeline elsewhere through the
    ``tenant.provisioning_requested`` event and waits for its signed callback."""

    mode: Literal["none", "docker", "external"] = "none"
    apps: list[str] = Field(default_factory=list)  # Nex apps every tenant of the tier gets
    callback_ttl: str = "20m"  # how long the one-time callback secret is valid
    callback_window: str = "5m"  # accepted clock skew of x-timestamp


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


class PlatformConfig(Section):
    apps_domain: str = Field(default="apps.localhost", pattern=r"^[a-z0-9.-]+$")
    hosts: list[HostConfig] = Field(default_factory=list)
    tiers: dict[str, TierConfig] = Field(default_factory=dict)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    edge: EdgeConfig | None = None  # none: no HTTPS edge (the edge agent idles)

    @model_validator(mode="after")
    def _unique_hosts(self) -> PlatformConfig:
        names = [h.name for h in self.hosts]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"host {name!r} is listed twice")
        for tier in self.tiers:
            if tier not in ("pooled", "silo"):
                raise ValueError(f"unknown tier {tier!r} (pooled or silo)")
        return self


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
