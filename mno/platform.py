"""Platform settings from the platform YAML: Docker hosts, tiers, webhooks, retention, billing.

The file is found at ``--config FILE``, then ``MNO_CONFIG``, then ``$MNO_HOME/platform.yaml``;
``configs/platform.yaml`` is the example. With none present the defaults below apply.
Each section is a typed model; unknown keys are errors that name the dotted key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mno import settings
from mno.errors import BadInput


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetentionConfig(Section):
    """How long the housekeeper keeps rows (durations like 30d; 0 keeps forever)."""

    events: str = "30d"
    audit: str = "365d"
    heartbeats: str = "1d"
    ticks: str = "7d"


class WebhooksConfig(Section):
    """Webhook delivery: networks the SSRF guard lets through (CIDRs)."""

    allow_networks: list[str] = Field(default_factory=list)


class BillingConfig(Section):
    """Billing policy: invoice issue, due dates and arrears."""

    issuer: str = "default"  # invoice numbering series
    auto_issue: bool = False  # the biller issues the drafts it creates
    due_days: int = Field(default=30, ge=0, le=365)
    arrears_after_days: int = Field(default=15, ge=0, le=365)  # after due_at
    suspend_in_arrears: bool = False  # also suspend the tenant
    run_after_hours: int = Field(default=1, ge=0, le=72)  # wait after the period closes


class PlatformConfig(Section):
    apps_domain: str = "apps.localhost"
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)


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
    import yaml

    try:
        data: Any = yaml.safe_load(text) or {}
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
