"""Prometheus metrics of the agent runtime (a private registry per process).

prometheus_client is imported when a runtime creates its metrics, not with this module.
"""

from __future__ import annotations


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.ticks = Counter(
            "mno_agent_ticks",
            "Agent passes by outcome.",
            ["agent", "outcome"],
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "mno_agent_tick_duration_seconds",
            "Duration of one agent pass.",
            ["agent"],
            registry=self.registry,
        )
        self.items = Counter(
            "mno_agent_items",
            "Work items by outcome.",
            ["agent", "outcome"],
            registry=self.registry,
        )
        self.item_seconds = Histogram(
            "mno_agent_item_duration_seconds",
            "Duration of handling one work item.",
            ["agent"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.queue = Gauge(
            "mno_agent_queue_depth",
            "Work items due now and leased.",
            ["agent", "state"],
            registry=self.registry,
        )

    def tick(self, agent: str, outcome: str, seconds: float) -> None:
        self.ticks.labels(agent, outcome).inc()
        self.tick_seconds.labels(agent).observe(seconds)

    def item(self, agent: str, outcome: str, seconds: float) -> None:
        self.items.labels(agent, outcome).inc()
        self.item_seconds.labels(agent).observe(seconds)

    def depth(self, agent: str, due: int, leased: int) -> None:
        self.queue.labels(agent, "due").set(due)
        self.queue.labels(agent, "leased").set(leased)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
