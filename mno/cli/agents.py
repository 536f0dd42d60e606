"""mno agents: run the agent daemons, tick one agent, show their status, write units.

The domain modules are imported inside the commands: they load SQLAlchemy, which
``mno --help`` and the group's own help do not need.
"""

from __future__ import annotations

import shutil
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, done, render, success
from mno.cli.params import IntervalOpt, WatchOpt, csv_list, render_or_watch

app = typer.Typer(help="Run and inspect the agent daemons.", no_args_is_help=True)
probe_app = typer.Typer(help="Queue probe work to check a fleet end to end.", no_args_is_help=True)
app.add_typer(probe_app, name="probe")

FileOpt = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="agents.yaml (default: MNO_AGENTS_CONFIG, the profile's agents_config, "
        "then $MNO_HOME/agents.yaml).",
    ),
]


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"


@app.command("run")
def run(
    file: FileOpt = None,
    only: Annotated[str | None, typer.Option(help="Only these agents, comma-separated.")] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve /metrics and /healthz on this port.")
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address for the metrics listener.")
    ] = "127.0.0.1",
    log_format: Annotated[
        LogFormat, typer.Option(help="text or json (one object per line).")
    ] = LogFormat.text,
    log_level: Annotated[
        LogLevel, typer.Option(help="info logs passes and failures; debug logs every item.")
    ] = LogLevel.info,
) -> None:
    """Run the agents in the foreground (first signal: warm stop; second: cold stop)."""
    from mno.agents import config
    from mno.agents.runner import Runner, setup_logging

    cfg = config.load(file)
    setup_logging(log_format.value, log_level.value.upper())
    runner = Runner(
        cfg, only=csv_list(only) or None, metrics_port=metrics_port, metrics_host=metrics_host
    )
    code = runner.run()
    raise typer.Exit(code)


@app.command("tick")
def tick(
    name: Annotated[str, typer.Argument(help="Agent name.")],
    file: FileOpt = None,
    max_items: Annotated[int | None, typer.Option("--max", help="Claim at most N items.")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Run one pass of one agent and exit (for cron-style hosts and CI)."""
    from mno.agents import config, registry
    from mno.agents.config import AgentConfig
    from mno.agents.runner import context_for, setup_logging, tick_once

    setup_logging("text")
    cfg = config.load(file)
    module = registry.load(name)
    agent_cfg = cfg.agents.get(name) or AgentConfig(name=name)
    ctx = context_for(name, agent_cfg, max_items=max_items)
    outcome = tick_once(module, ctx)
    r = outcome.result
    data = {
        "agent": name,
        "outcome": outcome.outcome,
        "claimed": r.claimed,
        "done": r.done,
        "failed": r.failed,
        "retried": r.retried,
        "duration_ms": round(r.duration_ms, 1),
        "details": r.details,
        "error": outcome.error,
    }
    render(data, output)
    if outcome.outcome != "ok":
        raise typer.Exit(1)


@app.command("status")
def status(
    file: FileOpt = None,
    output: OutputOpt = Format.table,
    watch: WatchOpt = False,
    every: IntervalOpt = "2s",
) -> None:
    """Show each agent: schedule, live processes, last tick and queue depth (--watch:
    again every --interval until Ctrl-C)."""
    from mno.agents import config

    cfg = config.load(file)
    render_or_watch(lambda: _status_once(cfg, output), watch, every, output)


def _status_once(cfg: Any, output: Format) -> None:
    from mno.agents import status as status_mod

    data = status_mod.collect(cfg)
    if output is not Format.table:
        render(data, output)
        return
    agents = [
        a
        | {
            "enabled": a["enabled"]
            if a["available"]
            else f"{'yes' if a['enabled'] else 'no'} (not in this build)",
            "last_tick": _short_time(a["last_tick"]),
        }
        for a in data["agents"]
    ]
    processes = [
        p
        | {
            "agents": ", ".join(p["agents"]),
            "since": _short_time(p["since"]),
            "last_beat": _short_time(p["last_beat"]),
        }
        for p in data["processes"]
    ]
    render(
        agents,
        Format.table,
        title="Agents",
        columns=["agent", "enabled", "schedule", "last_tick", "last_outcome", "due", "leased"],
    )
    render(
        processes,
        Format.table,
        title="Processes",
        columns=["host", "pid", "agents", "since", "last_beat", "state"],
        empty="No running processes.",
    )


def _short_time(value: object) -> object:
    """``2026-01-02 03:04:05`` (UTC) for tables; JSON keeps full ISO 8601."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else value


@app.command("config")
def config_cmd(
    file: FileOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="Validate only (exit 2 on error).")
    ] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Validate an agents.yaml and show what it configures."""
    from mno.agents import config, registry

    cfg = config.load(file)
    rows = [
        {
            "agent": name,
            "enabled": a.enabled,
            "schedule": a.schedule_text(),
            "batch_size": a.batch_size,
            "concurrency": a.concurrency,
            "lease": f"{a.lease.total_seconds():g}s",
            "available": name in registry.AGENTS,
        }
        for name, a in cfg.agents.items()
    ]
    if check and output is Format.table:
        found = config.find(file)
        where = str(found) if found else "no agents file: defaults"
        success(f"{where}: {len(rows)} agents, valid")
        return
    render(rows, output)


@app.command("systemd")
def systemd(
    user: Annotated[
        bool, typer.Option("--user", help="A user unit instead of a system one.")
    ] = False,
    name: Annotated[str, typer.Option(help="Unit name.")] = "mno-agents",
    file: Annotated[Path, typer.Option("--file", "-f", help="agents.yaml the unit runs.")] = Path(
        "/etc/mno/agents.yaml"
    ),
) -> None:
    """Print a ready-to-install systemd unit for `mno agents run`.

    TimeoutStopSec fits a warm stop: the longest lease of the file's enabled agents (an
    in-flight pass is over by then, or its items are taken back) plus a margin; 90s when
    the file is not readable here."""
    from mno.agents import config
    from mno.agents import systemd as unit

    stop = unit.stop_timeout(config.load(file)) if file.exists() else unit.DEFAULT_STOP
    sys.stdout.write(
        unit.render(
            name=name,
            user=user,
            agents_file=str(file.absolute()),
            executable=shutil.which("mno") or "/usr/local/bin/mno",
            stop_timeout=stop,
        )
    )


@probe_app.command("enqueue")
def probe_enqueue(
    count: Annotated[int, typer.Argument(help="How many probe items.")],
    batch: Annotated[str, typer.Option(help="A label to count them by.")] = "default",
    output: OutputOpt = Format.table,
) -> None:
    """Queue probe items; the probe agent handles each exactly once."""
    from mno.agents import probe
    from mno.store.db import session_scope

    with session_scope() as s:
        probe.enqueue(s, count, batch=batch)
    done({"queued": count, "batch": batch}, f"queued {count} probe items", output)


@probe_app.command("count")
def probe_count(output: OutputOpt = Format.table) -> None:
    """Count probe items by status and their side effects."""
    from mno.agents import status as status_mod
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        render(status_mod.probe_counts(s), output)
