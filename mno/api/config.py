"""API settings from the profile's ``api`` section, read once per process.

api:
  authorize_cache: 5s     # IDM answer cache; 0 turns it off
  rate_limit: 100         # requests per second per app key, all API processes together
  rate_burst: 200         # bucket size (the bucket is a row in the store)
  max_body: 65536         # bytes
"""

from __future__ import annotations

from dataclasses import dataclass

from mno import settings
from mno.errors import BadInput


@dataclass(frozen=True)
class ApiConfig:
    authorize_cache: float = 5.0
    rate_limit: float = 100.0
    rate_burst: float = 200.0
    max_body: int = 65536


_config: ApiConfig | None = None


def get() -> ApiConfig:
    global _config
    if _config is None:
        data = settings.profile_value("api", {}) or {}
        if not isinstance(data, dict):
            raise BadInput("profile api: expected a mapping")
        rate = float(data.get("rate_limit", 100))
        _config = ApiConfig(
            authorize_cache=settings.parse_duration(
                data.get("authorize_cache", "5s")
            ).total_seconds(),
            rate_limit=rate,
            rate_burst=float(data.get("rate_burst", rate * 2)),
            max_body=int(data.get("max_body", 65536)),
        )
        if _config.rate_limit <= 0 or _config.rate_burst < 1 or _config.max_body < 1024:
            raise BadInput("profile api: rate_limit > 0, rate_burst >= 1, max_body >= 1024")
    return _config


def reset() -> None:
    """Read the profile again on next use (tests, reloads)."""
    global _config
    _config = None
