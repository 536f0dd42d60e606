"""The kind registry: one adapter per document kind.

``REGISTRY`` maps a kind name to its adapter. A kind is registered only when its domain
module is importable, so areas that have not landed simply add no kind. ``order()`` sorts
kinds so that every kind comes after the kinds it depends on.
"""

from __future__ import annotations

import importlib

from mno.errors import BadInput
from mno.gitops.kinds.base import FileKind, Kind, Spec
from mno.gitops.kinds.settings import agents_kind

__all__ = ["REGISTRY", "FileKind", "Kind", "Spec", "get", "order", "store_kinds"]

# "module:Class" of each adapter, in dependency-friendly order.
ADAPTERS: list[str] = [
    "mno.gitops.kinds.tenant:TenantKind",
    "mno.gitops.kinds.app:AppKind",
    "mno.gitops.kinds.nex:DockerHostKind",
    "mno.gitops.kinds.nex:InstanceKind",
    "mno.gitops.kinds.sync:ConnectorKind",
    "mno.gitops.kinds.sync:ConnectionKind",
    "mno.gitops.kinds.webhooks:WebhookEndpointKind",
    "mno.gitops.kinds.webhooks:NotificationRuleKind",
    "mno.gitops.kinds.billing:MetricKind",
    "mno.gitops.kinds.billing:PlanKind",
    "mno.gitops.kinds.billing:CouponKind",
    "mno.gitops.kinds.billing:TaxRateKind",
    "mno.gitops.kinds.billing:BundleKind",
    "mno.gitops.kinds.settings:PlatformKind",
]


def _load() -> dict[str, Kind]:
    registry: dict[str, Kind] = {}
    for spec in ADAPTERS:
        module, _, attr = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError:
            continue  # that area's domain module is not there
        registry[cls.kind] = cls()

    agents = agents_kind()
    if agents is not None:
        registry[agents.kind] = agents()
    return registry


REGISTRY: dict[str, Kind] = _load()


def get(name: str) -> Kind:
    """The adapter of a kind, by name (case-insensitive, plural accepted)."""
    for kind in REGISTRY.values():
        if name.lower() in (kind.kind.lower(), kind.plural.lower()):
            return kind
    known = ", ".join(sorted(REGISTRY))
    raise BadInput(f"unknown kind {name!r}", f"known kinds: {known}")


def order(names: list[str] | None = None) -> list[str]:
    """Kind names with dependencies first (stable otherwise)."""
    names = list(REGISTRY) if names is None else names
    done: list[str] = []

    def visit(name: str, stack: tuple[str, ...] = ()) -> None:
        if name in done or name in stack:
            return
        for dep in REGISTRY[name].depends_on:
            if dep in REGISTRY:
                visit(dep, (*stack, name))
        done.append(name)

    for name in list(REGISTRY):
        visit(name)
    wanted = set(names)
    return [n for n in done if n in wanted]


def store_kinds() -> list[str]:
    """Kinds kept in the store, in dependency order."""
    return [n for n in order() if REGISTRY[n].in_store]
