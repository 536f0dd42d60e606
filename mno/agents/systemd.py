"""A systemd unit for ``mno agents run``."""

from __future__ import annotations

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
TimeoutStopSec=90s
{user_lines}
[Install]
WantedBy={wanted_by}
"""


def render(*, name: str, user: bool, agents_file: str, executable: str) -> str:
    user_lines = "" if user else "User=mno\nGroup=mno\n"
    return UNIT.format(
        name=name,
        executable=executable,
        agents_file=agents_file,
        user_lines=user_lines,
        wanted_by="default.target" if user else "multi-user.target",
    )
