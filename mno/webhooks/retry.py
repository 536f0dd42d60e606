"""The retry policy: a schedule of delays with ±20% jitter, Retry-After and floors.

After failed attempt ``n`` (1-based) the next attempt waits ``schedule[n-1]``:

- with no ``Retry-After``: that delay × uniform(0.8, 1.2);
- on 429/503 with ``Retry-After``: the header value clamped to [delay, 2 × delay], no
  jitter (the receiver asked for a time);
- after a timeout or a 429: at least 60 s.

When the schedule runs out (default: 1 + 7 attempts) the delivery is exhausted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from mno import settings

DEFAULT_SCHEDULE = ("5s", "5m", "30m", "2h", "5h", "10h", "10h")
JITTER = 0.2
THROTTLE_FLOOR_S = 60.0
DEFAULT_DISABLE_AFTER = "5d"


@dataclass
class Policy:
    schedule: list[float] = field(
        default_factory=lambda: [
            settings.parse_duration(d).total_seconds() for d in DEFAULT_SCHEDULE
        ]
    )
    jitter: float = JITTER
    disable_after: timedelta = field(
        default_factory=lambda: settings.parse_duration(DEFAULT_DISABLE_AFTER)
    )
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Policy:
        policy = cls()
        if options.get("retry_schedule") is not None:
            policy.schedule = [
                settings.parse_duration(d).total_seconds() for d in options["retry_schedule"]
            ]
        if options.get("jitter") is not None:
            policy.jitter = float(options["jitter"])
        if options.get("disable_after") is not None:
            policy.disable_after = settings.parse_duration(options["disable_after"])
        return policy

    @property
    def max_attempts(self) -> int:
        return 1 + len(self.schedule)

    def next_delay(
        self,
        attempts: int,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        timed_out: bool = False,
    ) -> float | None:
        """Seconds until the next attempt after ``attempts`` failed ones; None = exhausted."""
        if attempts >= self.max_attempts:
            return None
        scheduled = self.schedule[attempts - 1]
        if retry_after is not None and status_code in (429, 503):
            delay = min(max(retry_after, scheduled), 2 * scheduled)
        else:
            delay = scheduled * (1 + self.rng.uniform(-self.jitter, self.jitter))
        if timed_out or status_code == 429:
            delay = max(delay, THROTTLE_FLOOR_S)
        return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, (when - now).total_seconds())
