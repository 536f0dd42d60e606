"""Named tiers in the platform YAML (isolation, mode, apps, limits, placement labels,
callbacks) with the README's example as written, and subscriptions to Nex apps after a
tenant was provisioned, on the real engine."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from mno.errors import BadInput
from tests.conftest import counts
from tests.nex.conftest import Nex

ROOT = Path(__file__).resolve().parents[2]
LOCAL_EU = (
    "hosts:\n  - {name: local, base_url: 'unix:///var/run/docker.sock', labels: {zone: eu}}\n"
)


def readme_tiers() -> str:
    """The platform YAML of the README's tenant provisioning section, as written."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("**Tenant provisioning**") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    assert "enterprise:" in block.group(1)
    return block.group(1)


def _key(nex: Nex) -> str:
    key = f"t{uuid.uuid4().hex[:10]}"
    nex.tenants.append(key)  # its containers and network are removed afterwards
    return key


def _tenant(url: str, key: str) -> Any:
    from mno.store.db import session_scope
    from mno.tenancy import tenants

    with session_scope(url, write=False) as s:
        t = tenants.get(s, key)
        return t.status, t.tier


def test_the_readme_tiers_parse_and_provision(nex: Nex, cli: Any) -> None:
    from mno import platform

    yaml_text = readme_tiers()
    config = platform.parse(yaml_text)
    assert set(config.tiers) >= {"silo", "pooled", "enterprise", "premium"}
    assert config.tiers["silo"].isolation == "silo"
    assert config.tiers["enterprise"].isolation == "pooled"
    assert config.tiers["premium"].isolation == "silo"

    # the same YAML, with a host that carries the premium tier's label
    nex.configure("apps_domain: apps.test\n" + LOCAL_EU + yaml_text)
    nex.app("crm", volume=False)

    pooled = _key(nex)
    assert cli.json("tenant", "create", pooled, "--tier", "pooled")["tier"] == "pooled"
    assert cli.json("tenant", "provision", pooled)["status"] == "active"

    enterprise = _key(nex)
    assert cli.json("tenant", "create", enterprise, "--tier", "enterprise")["tier"] == "enterprise"
    assert cli.json("tenant", "provision", enterprise)["status"] == "provisioning"
    requested = [p for t, p in nex.events("tenant.provisioning_requested")]
    assert [p["tier"] for p in requested if p["tenant"] == enterprise] == ["enterprise"]

    silo = _key(nex)
    cli.json("tenant", "create", silo, "--tier", "silo")
    premium = _key(nex)
    cli.json("tenant", "create", premium, "--tier", "premium")
    for key in (silo, premium):
        assert cli.json("tenant", "provision", key)["status"] == "provisioning"
        assert [i["name"] for i in cli.json("instance", "list", "--tenant", key)] == [f"crm-{key}"]
    nex.tick()
    for key in (silo, premium):
        assert _tenant(nex.url, key) == ("active", "silo" if key == silo else "premium")
        view = nex.get(f"crm-{key}")
        network = f"mno-{_namespace(nex.url)}-tenant-{key}"
        assert view["status"] == "running" and view["network"] == network
        (container,) = nex.containers(f"crm-{key}")
        assert network in container.attrs["NetworkSettings"]["Networks"]

    # the premium tier's limits over the app's 64m
    view = nex.get(f"crm-{premium}")
    assert (view["memory"], view["cpus"], view["pids"]) == ("512m", "1", 500)
    (container,) = nex.containers(f"crm-{premium}")
    host_config = container.attrs["HostConfig"]
    assert host_config["Memory"] == 512 * 1024**2
    assert host_config["NanoCpus"] == 10**9 and host_config["PidsLimit"] == 500
    assert nex.get(f"crm-{silo}")["memory"] == "64m"  # the silo tier sets none


def test_an_undeclared_tier_is_refused_and_nothing_written(nex: Nex, cli: Any) -> None:
    nex.configure("apps_domain: apps.test\ntiers:\n  gold: {mode: none}\n")
    nex.tenant()  # the store exists
    key = _key(nex)
    before = counts(nex.url)
    refused = cli("tenant", "create", key, "--tier", "enterprise")
    assert refused.exit_code == 2
    assert refused.stderr.count("\n") == 1
    assert "unknown tier 'enterprise'" in refused.stderr
    assert "pooled, silo, gold" in refused.stderr
    assert counts(nex.url) == before

    assert cli.json("tenant", "create", key, "--tier", "gold")["tier"] == "gold"
    assert cli("tenant", "update", key, "--tier", "bronze").exit_code == 2
    assert cli.json("tenant", "update", key, "--tier", "silo")["tier"] == "silo"
    listed = cli.json("tenant", "list", "--tier", "silo")
    assert [t["key"] for t in listed] == [key]
    assert cli("tenant", "list", "--tier", "bronze").exit_code == 2


@pytest.mark.parametrize(
    ("yaml_text", "where"),
    [
        ("tiers:\n  premium: {isolation: private}\n", "tiers.premium.isolation"),
        ("tiers:\n  premium: {memory: lots}\n", "tiers.premium.memory"),
        ("tiers:\n  premium: {cpus: 0}\n", "tiers.premium.cpus"),
        ("tiers:\n  premium: {max_instances: -1}\n", "tiers.premium.max_instances"),
        ("tiers:\n  premium: {mode: kubernetes}\n", "tiers.premium.mode"),
        ("tiers:\n  premium: {backups: daily}\n", "tiers.premium.backups"),
        ("tiers:\n  Premium_EU: {}\n", "tiers"),
        ("tiers:\n  enterprise-eu: {}\n", "tiers"),
    ],
)
def test_tier_errors_name_the_dotted_key(yaml_text: str, where: str) -> None:
    from mno import platform

    with pytest.raises(BadInput) as caught:
        platform.parse(yaml_text, "platform.yaml")
    assert str(caught.value).startswith(f"platform.yaml {where}:")


def test_old_configs_keep_their_meaning() -> None:
    from mno import platform

    config = platform.parse("tiers:\n  silo: {mode: docker, apps: [web]}\n  pooled: {}\n")
    assert config.tier("silo").isolation == "silo" and config.tier("silo").mode == "docker"
    assert config.tier("pooled").isolation == "pooled" and config.tier("pooled").mode == "none"
    empty = platform.parse("")
    assert empty.tier_names() == ["pooled", "silo"]
    assert empty.tier("silo").isolation == "silo" and empty.tier("silo").mode == "none"


def test_tier_placement_labels_must_match_a_host(nex: Nex) -> None:
    nex.configure(
        "apps_domain: apps.test\n"
        + LOCAL_EU
        + "tiers:\n  us: {mode: docker, labels: {zone: us}}\n"
        + "  eu: {mode: docker, labels: {zone: eu}}\n"
    )
    nex.app(volume=False)
    us, eu = nex.tenant(tier="us"), nex.tenant(tier="eu")
    far, near = nex.create(us, "web"), nex.create(eu, "web")
    nex.tick()
    assert nex.get(near)["status"] == "running" and nex.get(near)["host"] == "local"
    failed = nex.get(far)
    assert failed["host"] is None and failed["status"] in ("failed", "staged")
    assert "labels do not match the tier's {'zone': 'us'}" in (failed["last_error"] or "")
    assert nex.containers(far) == []


def test_max_instances_per_tenant(nex: Nex, cli: Any) -> None:
    nex.configure("apps_domain: apps.test\ntiers:\n  small: {max_instances: 1}\n")
    nex.app(volume=False, multi_instantiable=True)
    key = nex.tenant(tier="small")
    nex.create(key, "web")
    before = counts(nex.url)
    refused = cli("instance", "create", key, "web")
    assert refused.exit_code == 1 and "the limit of tier small" in refused.stderr
    assert counts(nex.url) == before
    other = nex.tenant(tier="small")  # the limit is per tenant
    nex.create(other, "web")


# -- subscriptions to Nex apps after provisioning -------------------------------------------


def _plan(cli: Any) -> str:
    result = cli("billing", "plan", "create", "basic", "--currency", "USD", "--amount", "9.99")
    assert result.exit_code == 0, result.stderr
    return "basic"


def _last_actions(url: str, n: int) -> set[str]:
    from mno.store import audit
    from mno.store.db import session_scope

    with session_scope(url, write=False) as s:
        return {r.action for r in audit.list_entries(s, limit=n)}


def test_subscribing_after_provisioning_creates_the_instance(
    nex: Nex, cli: Any, store_url: str
) -> None:
    nex.configure("apps_domain: apps.test\ntiers:\n  gold: {mode: docker, isolation: silo}\n")
    nex.app()
    plan = _plan(cli)
    key = _key(nex)
    cli.json("tenant", "create", key, "--tier", "gold")
    assert cli.json("tenant", "provision", key)["status"] == "active"  # no app yet
    name = f"web-{key}"

    before = counts(nex.url)
    sub = cli.json("subscription", "create", key, plan, "--app", "web")
    view = nex.get(name)  # recorded with the subscription
    assert view["status"] == "staged" and view["desired"] == "running"
    after = counts(nex.url)
    assert after[0] - before[0] == 2  # one transaction: both audit rows
    assert _last_actions(nex.url, 2) == {"subscription.create", "instance.create"}
    types = [t for t, p in nex.events("") if t in ("subscription.created", "instance.created")]
    assert types[-2:] == ["subscription.created", "instance.created"]

    nex.tick()
    assert nex.get(name)["status"] == "running"
    assert nex.get(name)["network"] == f"mno-{_namespace(nex.url)}-tenant-{key}"
    assert _tenant(nex.url, key) == ("active", "gold")
    assert cli("instance", "exec", name, "--", "sh", "-c", "echo mine > /www/data/a").exit_code == 0

    # ending the subscription stops the instance and keeps its data
    cli.json("subscription", "cancel", sub["id"], "--yes")
    assert nex.get(name)["desired"] == "stopped"
    nex.tick()
    view = nex.get(name)
    assert view["status"] == "stopped" and _tenant(nex.url, key)[0] == "active"
    assert nex.client.volumes.list(filters={"name": view["volume"]})
    assert len(nex.containers(name)) == 1

    # subscribing again starts it, with the data it had
    cli.json("subscription", "create", key, plan, "--app", "web")
    nex.tick()
    assert nex.get(name)["status"] == "running"
    again = cli("instance", "exec", name, "--", "cat", "/www/data/a")
    assert again.exit_code == 0 and again.stdout == "mine\n"


def test_a_subscription_beyond_the_tier_limit_writes_nothing(
    nex: Nex, cli: Any, store_url: str
) -> None:
    nex.configure(
        "apps_domain: apps.test\ntiers:\n  one: {mode: docker, apps: [web], max_instances: 1}\n"
    )
    nex.app(volume=False)
    nex.app("crm", volume=False)
    plan = _plan(cli)
    key = _key(nex)
    cli.json("tenant", "create", key, "--tier", "one")
    cli.json("tenant", "provision", key)
    nex.tick()
    assert _tenant(nex.url, key)[0] == "active"
    before = counts(nex.url)
    refused = cli("subscription", "create", key, plan, "--app", "crm")
    assert refused.exit_code == 1 and "the limit of tier one" in refused.stderr
    assert counts(nex.url) == before
    assert cli.json("subscription", "list", "--tenant", key) == []


def test_subscriptions_before_provisioning_or_outside_docker_mode(nex: Nex, cli: Any) -> None:
    nex.configure("apps_domain: apps.test\ntiers:\n  gold: {mode: docker}\n")
    nex.app(volume=False)
    plan = _plan(cli)
    waiting = _key(nex)
    cli.json("tenant", "create", waiting, "--tier", "gold")  # pending_provision
    cli.json("subscription", "create", waiting, plan, "--app", "web")
    assert cli.json("instance", "list", "--tenant", waiting) == []
    # provisioning then creates it, as before
    cli.json("tenant", "provision", waiting)
    assert [i["name"] for i in cli.json("instance", "list", "--tenant", waiting)] == [
        f"web-{waiting}"
    ]

    plain = nex.tenant(tier="pooled")  # mode none: nothing is hosted for the tier
    cli.json("subscription", "create", plain, plan, "--app", "web")
    assert cli.json("instance", "list", "--tenant", plain) == []


def test_tenant_documents_take_a_declared_tier(
    nex: Nex, cli: Any, tmp_path: Path, store_url: str
) -> None:
    nex.configure("apps_domain: apps.test\ntiers:\n  premium: {isolation: silo}\n")
    nex.tenant()  # the store exists
    key = _key(nex)
    doc = tmp_path / "t.yaml"
    doc.write_text(f"kind: Tenant\nmetadata: {{name: {key}}}\nspec: {{tier: premium}}\n")
    assert cli("apply", "-f", doc).exit_code == 0
    assert _tenant(nex.url, key) == ("pending_provision", "premium")
    before = counts(nex.url)
    doc.write_text(f"kind: Tenant\nmetadata: {{name: {key}}}\nspec: {{tier: gold}}\n")
    refused = cli("apply", "-f", doc)
    assert refused.exit_code == 2 and "unknown tier 'gold'" in refused.stderr
    assert counts(nex.url) == before


def _namespace(url: str) -> str:
    """The store's namespace, which its Docker names carry."""
    from mno.nex import namespace
    from mno.store.db import session_scope

    with session_scope(url, write=False) as s:
        return namespace.get(s)
