"""The agents' HTTP listener on loopback: health, metrics and routers other areas add."""

from __future__ import annotations

import socket

import httpx
from fastapi import APIRouter

from mno.agents import registry
from mno.agents.config import AgentConfig, AgentsFile
from mno.agents.http import serve_in_thread
from mno.agents.runner import Runner

router = APIRouter()


@router.post("/v1/callbacks/test")
def callback(body: dict) -> dict:
    return {"got": body}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_listener_serves_health_metrics_and_registered_routers(sqlite_url, monkeypatch):
    monkeypatch.setattr(registry, "HTTP_ROUTERS", [f"{__name__}:router"])
    runner = Runner(AgentsFile(agents={"probe": AgentConfig(name="probe")}), db_url=sqlite_url)
    runner.select_agents()
    port = _free_port()
    server = serve_in_thread(runner, "127.0.0.1", port)
    base = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(f"{base}/healthz").status_code == 503  # no heartbeat yet
        runner.beat()
        assert httpx.get(f"{base}/healthz").status_code == 200
        runner.tick("probe")
        metrics = httpx.get(f"{base}/metrics").text
        assert 'mno_agent_ticks_total{agent="probe",outcome="ok"} 1.0' in metrics
        assert 'mno_agent_queue_depth{agent="probe",state="due"} 0.0' in metrics
        reply = httpx.post(f"{base}/v1/callbacks/test", json={"a": 1})
        assert reply.status_code == 200 and reply.json() == {"got": {"a": 1}}
        runner.stop_event.set()  # a warm stop makes the process unhealthy at once
        assert httpx.get(f"{base}/healthz").status_code == 503
    finally:
        server.should_exit = True
