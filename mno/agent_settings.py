"""The settings of the agent daemons, as ``agents.yaml`` states them: typed models.

``AgentConfig`` is one agent's schedule (an interval or a cron expression in a timezone,
with jitter), batch size, concurrency, lease and options; ``AgentsFile`` is the whole file.
They sit below every package so that the daemons (``mno.agents.config`` reads the file
and names file:line in errors) and gitops (the ``AgentsConfig`` kind) validate with the
same models. A cron expression is checked by APScheduler's own parser, imported only
when one is given.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mno.errors import BadInput
from mno.settings import parse_duration
from mno.validate import timezone


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    enabled: bool = True
    interval: timedelta | None = None
    cron: str | None = None
    timezone: str = "UTC"
    jitter: timedelta = timedelta(0)
    batch_size: int = Field(default=100, ge=1, le=100_000)
    concurrency: int = Field(default=4, ge=1, le=256)
    lease: timedelta = timedelta(seconds=60)
    misfire_grace: timedelta = timedelta(seconds=30)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("interval", "jitter", "lease", "misfire_grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except BadInput as exc:
            raise ValueError("expected a duration like 10s") from exc

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"expected a crontab expression like '*/5 * * * *': {exc}") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            return timezone(value)
        except BadInput as exc:
            raise ValueError(str(exc)) from exc

    @model_validator(mode="after")
    def _schedule(self) -> AgentConfig:
        if self.interval is None and self.cron is None:
            self.interval = timedelta(seconds=10)
        if self.interval is not None and self.cron is not None:
            raise ValueError("give either interval or cron, not both")
        if self.interval is not None and self.interval.total_seconds() <= 0:
            raise ValueError("interval must be positive")
        return self

    def schedule_text(self) -> str:
        if self.cron:
            return f"cron {self.cron} ({self.timezone})"
        seconds = self.interval.total_seconds() if self.interval else 0
        return f"every {_human(seconds)}"


def _human(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class AgentsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    heartbeat: timedelta = timedelta(seconds=5)

    @field_validator("heartbeat", mode="before")
    @classmethod
    def _beat(cls, value: Any) -> Any:
        return AgentConfig._duration(value)
