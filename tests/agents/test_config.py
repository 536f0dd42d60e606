"""agents.yaml: typed models, and errors that name file:line and the dotted key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mno.agents import config
from mno.errors import BadInput

GOOD = """\
heartbeat: 2s
agents:
  housekeeper:
    interval: 1h
    jitter: 30s
  biller:
    cron: "15 * * * *"
    timezone: Europe/Paris
    lease: 30m
  dispatcher:
    enabled: false
    batch_size: 500
    concurrency: 32
    options:
      retry_schedule: [5s, 5m, 30m]
"""


def test_typed_models():
    cfg = config.parse(GOOD)
    assert cfg.heartbeat == timedelta(seconds=2)
    hk, biller, disp = cfg.agents["housekeeper"], cfg.agents["biller"], cfg.agents["dispatcher"]
    assert (hk.name, hk.interval, hk.jitter) == (
        "housekeeper",
        timedelta(hours=1),
        timedelta(seconds=30),
    )
    assert biller.cron == "15 * * * *" and biller.interval is None
    assert biller.timezone == "Europe/Paris" and biller.lease == timedelta(minutes=30)
    assert biller.schedule_text() == "cron 15 * * * * (Europe/Paris)"
    assert disp.enabled is False and (disp.batch_size, disp.concurrency) == (500, 32)
    assert disp.options == {"retry_schedule": ["5s", "5m", "30m"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "agents:\n  dispatcher:\n    interval: soon\n",
            "agents.yaml:3 dispatcher.interval: expected a duration like 10s",
        ),
        (
            "agents:\n  a: {}\n  b:\n    batch_size: 0\n",
            "agents.yaml:4 b.batch_size: Input should be greater than or equal to 1",
        ),
        ("agents:\n  a:\n    intervall: 5s\n", "agents.yaml:3 a.intervall: unknown key"),
        ("agents:\n  a: {}\n  a: {}\n", "agents.yaml:3 a: duplicate key"),
        ("agents:\n  a:\n    timezone: Mars/Base\n", "agents.yaml:3 a.timezone: "),
        ("agents:\n  a:\n    cron: '61 * * * *'\n", "agents.yaml:3 a.cron: expected a crontab"),
        (
            "agents:\n  a:\n    interval: 1s\n    cron: '* * * * *'\n",
            "agents.yaml:2 a: give either interval or cron, not both",
        ),
        ("agents: [\n", "agents.yaml:2 not valid YAML"),
        ("- 1\n", "agents.yaml:1 expected a mapping"),
    ],
)
def test_errors_name_file_line_and_key(text, message):
    with pytest.raises(BadInput) as info:
        config.parse(text, "agents.yaml")
    assert str(info.value).startswith(message)
    assert info.value.exit_code == 2


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        config.load(tmp_path / "nope.yaml")


def test_example_config_is_valid():
    from pathlib import Path

    example = Path(__file__).parents[2] / "configs" / "agents.yaml"
    cfg = config.load(example)
    assert {"housekeeper", "dispatcher", "provisioner", "biller", "poller"} <= set(cfg.agents)
    assert cfg.agents["dispatcher"].options["retry_schedule"]


def test_the_agents_file_is_found_through_settings_never_the_current_directory(
    tmp_path, monkeypatch, mno_env, cli
):
    """A configs/agents.yaml in the working directory is ignored; $MNO_HOME/agents.yaml,
    the profile's agents_config and MNO_AGENTS_CONFIG are used, in reverse order."""
    import json

    def dispatcher_enabled() -> bool:
        result = cli("agents", "config", "-o", "json")
        assert result.exit_code == 0, result.stderr
        return {r["agent"]: r["enabled"] for r in json.loads(result.stdout)}["dispatcher"]

    off = "agents:\n  dispatcher: {enabled: false}\n"
    work = tmp_path / "work"
    (work / "configs").mkdir(parents=True)
    (work / "configs" / "agents.yaml").write_text(off)
    monkeypatch.chdir(work)
    assert config.find() is None and dispatcher_enabled() is True

    (mno_env / "agents.yaml").write_text(off)
    assert config.find() == mno_env / "agents.yaml" and dispatcher_enabled() is False

    profile_file = tmp_path / "profile-agents.yaml"
    profile_file.write_text("agents:\n  dispatcher: {enabled: true}\n")
    (mno_env / "config.yaml").write_text(
        f"profiles:\n  default:\n    agents_config: {profile_file}\n"
    )
    assert config.find() == profile_file and dispatcher_enabled() is True

    env_file = tmp_path / "env-agents.yaml"
    env_file.write_text(off)
    monkeypatch.setenv("MNO_AGENTS_CONFIG", str(env_file))
    assert config.find() == env_file and dispatcher_enabled() is False
    checked = cli("agents", "config", "--check")
    assert checked.exit_code == 0 and str(env_file) in checked.stderr
