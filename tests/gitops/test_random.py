"""Randomised: any valid desired state, applied, leaves nothing to diff (and a second state
applied over the first converges too)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mno.gitops import diff, documents
from mno.gitops.apply import Options, apply_documents
from tests.gitops.conftest import empty_store

KEYS = [f"t{i}" for i in range(12)]
CURRENCIES = ["USD", "EUR", "JPY", "GBP"]
ZONES = ["UTC", "Europe/Paris", "Asia/Tokyo", "America/New_York"]
COUNTRIES = [None, "FR", "JP", "US"]
TEXT = st.text(alphabet="abcdefgh XYZ-é", min_size=1, max_size=12).map(str.strip).filter(bool)


@st.composite
def tenant_docs(draw: Any) -> list[dict[str, Any]]:
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, min_size=1, max_size=8))
    depth: dict[str, int] = {}
    out = []
    for i, key in enumerate(keys):
        spec: dict[str, Any] = {}
        parents = [k for k in keys[:i] if depth[k] < 2]
        parent = draw(st.one_of(st.none(), st.sampled_from(parents))) if parents else None
        depth[key] = 1 + (depth[parent] if parent else 0)
        if parent:
            spec["parent"] = parent
        if draw(st.booleans()):
            spec["name"] = draw(TEXT)
        if draw(st.booleans()):
            spec["tier"] = draw(st.sampled_from(["pooled", "silo"]))
        if draw(st.booleans()):
            spec["currency"] = draw(st.sampled_from(CURRENCIES))
        if draw(st.booleans()):
            spec["timezone"] = draw(st.sampled_from(ZONES))
        if draw(st.booleans()):
            spec["country"] = draw(st.sampled_from(COUNTRIES))
        if draw(st.booleans()):
            spec["city"] = draw(st.one_of(st.none(), TEXT))
        if draw(st.booleans()):
            spec["domains"] = [f"{key}.example.com"] if draw(st.booleans()) else []
        if draw(st.booleans()):
            spec["metadata"] = draw(st.dictionaries(st.sampled_from("abc"), st.integers(0, 9)))
        if draw(st.booleans()):
            people = draw(st.lists(st.sampled_from(["ann", "bob", "cy"]), unique=True))
            first = draw(st.booleans())
            spec["contacts"] = [
                {
                    "name": draw(TEXT),
                    "email": f"{who}@{key}.example.com",
                    "type": draw(st.sampled_from(["admin", "billing", "other"])),
                    "primary": first and i == 0,
                }
                for i, who in enumerate(people)
            ]
        labels = draw(st.dictionaries(st.sampled_from(["team", "env"]), TEXT, max_size=2))
        out.append({"kind": "Tenant", "metadata": {"name": key, "labels": labels}, "spec": spec})
    return out


@st.composite
def states(draw: Any) -> list[dict[str, Any]]:
    tenants = draw(tenant_docs())
    keys = [d["metadata"]["name"] for d in tenants]
    apps = []
    for code in draw(st.lists(st.sampled_from(["crm", "wiki", "nex1", "nex2"]), unique=True)):
        spec: dict[str, Any] = {"name": draw(TEXT)}
        if code.startswith("nex"):
            spec |= {"stack": "nex", "image": "nginx:1", "port": draw(st.integers(1, 65535))}
            if draw(st.booleans()):
                spec["memory"] = draw(st.sampled_from(["256m", "1g", None]))
        if draw(st.booleans()):
            spec["owner"] = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            spec["access"] = draw(st.sampled_from(["own", "any", "explicit"]))
        if draw(st.booleans()):
            spec["enabled"] = draw(st.booleans())
        if draw(st.booleans()):
            granted = draw(st.lists(st.sampled_from(keys), unique=True, max_size=3))
            spec["grants"] = [{"tenant": k, "can_edit": draw(st.booleans())} for k in granted]
        if draw(st.booleans()):
            spec["env"] = {"MODE": draw(TEXT)}
        apps.append({"kind": "App", "metadata": {"name": code}, "spec": spec})
    hosts = []
    for name in draw(st.lists(st.sampled_from(["h1", "h2", "h3"]), unique=True)):
        spec = {}
        # one engine is one host: only h1 may be the local engine (the default base_url)
        if name != "h1" or draw(st.booleans()):
            spec["base_url"] = draw(st.sampled_from(["tcp://10.0.0.1:2375", "ssh://ops@h"]))
        if draw(st.booleans()):
            spec["memory"] = draw(st.sampled_from(["8g", "512m", None]))
        if draw(st.booleans()):
            spec["max_instances"] = draw(st.one_of(st.none(), st.integers(0, 500)))
        if draw(st.booleans()):
            spec["labels"] = draw(st.dictionaries(st.sampled_from(["zone", "gpu"]), TEXT))
        if draw(st.booleans()):
            spec["timeout"] = draw(st.integers(1, 600))
        hosts.append({"kind": "DockerHost", "metadata": {"name": name}, "spec": spec})
    return tenants + apps + hosts


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(first=states(), second=states())
def test_random_desired_state_applies_to_an_empty_diff(
    store_url: str, first: list[dict[str, Any]], second: list[dict[str, Any]]
) -> None:
    from mno.store.db import session_scope

    with session_scope(store_url):
        pass
    empty_store(store_url)
    # an app's owner is fixed at creation: the second state keeps the first one's owners
    owners = {d["metadata"]["name"]: d["spec"].get("owner") for d in first if d["kind"] == "App"}
    for d in second:
        code = d["metadata"]["name"]
        if d["kind"] == "App" and code in owners:
            d["spec"].pop("owner", None)
            if owners[code] is not None:
                d["spec"]["owner"] = owners[code]
    for state in (first, second):
        docs = documents.from_data(state)
        with session_scope(store_url) as s:
            apply_documents(s, docs, Options())
        with session_scope(store_url, write=False) as s:
            left = diff.compute(s, documents.from_data(state))
        assert not left.has_changes, [c.as_dict() for c in left.changes]
