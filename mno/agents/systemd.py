"""A systemd unit for ``mno agents run``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mno.agents.config import AgentsFile

DEFAULT_STOP = 90
MARGIN = 15
CEILING = 30 * 60

UNIT = """[Unit]
Description=mno agents ({name})
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={executable} agents run -f {agents_file} --log-format json
EnvironmentFile=-/etc/mno/agents.env
Restart=on-failure
RestartSec=5s
# The first SIGTERM is a warm stop: in-flight items finish and leases are released.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec={stop_timeout}s
{user_lines}
[Install]
WantedBy={wanted_by}
"""


def stop_timeout(cfg: AgentsFile) -> int:
    """Seconds systemd waits for a warm stop before SIGKILL."""
    leases = [a.lease.total_seconds() for a in cfg.agents.values() if a.enabled]
    longest = max(leases, default=DEFAULT_STOP - MARGIN)
    return int(min(CEILING, max(30, longest + MARGIN)))


def render(
    *, name: str, user: bool, agents_file: str, executable: str, stop_timeout: int = DEFAULT_STOP
) -> str:
    user_lines = "" if user else "User=mno\nGroup=mno\n"
    return UNIT.format(
        name=name,
        executable=executable,
        agents_file=agents_file,
        user_lines=user_lines,
        stop_timeout=stop_timeout,
        wanted_by="default.target" if user else "multi-user.target",
    )
