"""The DockerHost kind: hosts kept in the store through apply, diff, export and prune."""

from __future__ import annotations

import json

import pytest

from mno.errors import BadInput, Conflict
from mno.gitops import diff, documents, export
from mno.gitops.apply import apply_path
from tests.conftest import counts
from tests.gitops.conftest import empty_store, row_counts

HOSTS = """
kind: DockerHost
metadata: {name: docker-1, labels: {rack: r1}}
spec:
  base_url: tcp://10.0.0.11:2375
  publish_address: 10.0.0.11
  memory: 16g
  max_instances: 40
  labels: {zone: eu-1}
---
kind: DockerHost
metadata: {name: docker-2}
spec:
  base_url: ssh://deploy@10.0.0.12
  labels: {zone: eu-2, gpu: "true"}
"""


def _apply(session, path, **opts):
    with session() as s:
        return apply_path(s, path, **opts)


def _diff(session, path, **opts):
    with session(write=False) as s:
        return diff.compute(s, documents.load([path]), **opts)


def test_docker_hosts_round_trip_and_are_placement_candidates(
    session, store_url, write, tmp_path
) -> None:
    from mno import platform
    from mno.nex import hosts

    write("hosts.yaml", HOSTS)
    cs = _apply(session, write.root)
    assert [(c.ref, c.action) for c in cs.changes] == [
        ("DockerHost/docker-1", "create"),
        ("DockerHost/docker-2", "create"),
    ]
    assert not _diff(session, write.root).has_changes
    with session(write=False) as s:
        configured = hosts.configured(platform.PlatformConfig(), s)
        assert [(h.name, h.memory, h.labels) for h in configured] == [
            ("docker-1", "16g", {"zone": "eu-1"}),
            ("docker-2", None, {"gpu": "true", "zone": "eu-2"}),
        ]
        # without the store, a process sees only its platform YAML (here: the local engine)
        assert [h.name for h in hosts.configured(platform.PlatformConfig())] == ["local"]
        first = export.dumps(export.export(s, ["DockerHost"]))
    assert "memory: 16g\n" in first and "base_url: unix" not in first
    (tmp_path / "export.yaml").write_text(first)
    empty_store(store_url)
    _apply(session, tmp_path / "export.yaml")
    with session(write=False) as s:
        assert export.dumps(export.export(s, ["DockerHost"])) == first


def test_placement_chooses_among_yaml_and_stored_hosts(session, write) -> None:
    from mno import platform
    from mno.nex import hosts
    from mno.tenancy import apps

    write("hosts.yaml", HOSTS)
    _apply(session, write.root)
    config = platform.PlatformConfig.model_validate(
        {"hosts": [{"name": "yaml-1", "memory": "4g", "labels": {"zone": "eu-2"}}]}
    )
    with session() as s:
        app = apps.create(
            s, "Gpu", code="gpu", stack="nex", image="x:1", port=80, labels={"gpu": "true"}
        )[0]
        plain = apps.create(s, "Web", code="web", stack="nex", image="x:1", port=80)[0]
        reachable = {"yaml-1", "docker-1", "docker-2"}
        assert hosts.place(s, app, 2**30, reachable, config).name == "docker-2"
        assert hosts.place(s, plain, 2**30, reachable, config).name == "docker-2"  # unlimited
        assert hosts.place(s, plain, 2**30, {"yaml-1", "docker-1"}, config).name == "docker-1"
        with pytest.raises(Conflict, match="host yaml-1 is listed in the platform YAML"):
            hosts.add(s, "yaml-1", config, base_url="tcp://10.0.0.9:2375")


def test_hand_change_is_drift_and_prune_removes_hosts(cli, session, store_url, write) -> None:
    write("hosts.yaml", HOSTS)
    assert cli("apply", "-f", write.root, "--source", "infra").exit_code == 0
    result = cli("host", "update", "docker-1", "--memory", "32g", "--label", "zone=eu-9")
    assert (result.exit_code, result.stderr) == (0, "✓ host docker-1 updated\n")
    result = cli("diff", "-f", write.root, "--source", "infra", "-o", "json")
    assert result.exit_code == 1
    change = json.loads(result.stdout)["changes"][0]
    assert change["fields"] == [
        {"field": "memory", "before": "32g", "after": "16g", "drift": True},
        {"field": "labels", "before": {"zone": "eu-9"}, "after": {"zone": "eu-1"}, "drift": True},
    ]
    assert cli("apply", "-f", write.root, "--source", "infra").exit_code == 0
    assert cli("diff", "-f", write.root, "--source", "infra").exit_code == 0
    write("hosts.yaml", HOSTS.split("---")[0])
    result = cli("apply", "-f", write.root, "--source", "infra", "--prune")
    assert result.exit_code == 0, result.stderr
    assert "- DockerHost/docker-2 deleted" in result.stdout
    assert [r["name"] for r in cli.json("host", "list")] == ["docker-1"]
    events = [t for t in _event_types(store_url) if t.startswith("host.")]
    assert events == [
        "host.created",
        "host.created",
        "host.updated",
        "host.updated",
        "host.deleted",
    ]
    result = cli("host", "remove", "docker-2", "--yes")
    assert result.exit_code == 1 and "host docker-2 is not kept in the store" in result.stderr


def test_invalid_hosts_are_refused_with_positions_and_nothing_written(
    cli, session, store_url, write
) -> None:
    write("hosts.yaml", HOSTS.replace("memory: 16g", "memory: lots"))
    with pytest.raises(BadInput) as err:
        documents.load([write.root])
    assert "hosts.yaml:6:11: spec.memory" in err.value.message
    with session():
        pass  # the store exists, empty
    before = counts(store_url), row_counts(store_url)
    result = cli("host", "add", "bad_name", "--base-url", "tcp://h:1")
    assert result.exit_code == 2 and "host bad_name: name" in result.stderr
    result = cli("host", "add", "h1", "--base-url", "ftp://h:1")
    assert result.exit_code == 2 and "invalid base_url" in result.stderr
    assert (counts(store_url), row_counts(store_url)) == before


def _event_types(url: str) -> list[str]:
    import sqlalchemy as sa

    from mno.store import db

    with db.get_engine(url).connect() as conn:
        return list(conn.execute(sa.text("SELECT type FROM outbox_event ORDER BY seq")).scalars())


INSTANCES = """
kind: Tenant
metadata: {name: acme}
spec: {name: Acme}
---
kind: App
metadata: {name: web}
spec: {name: Web, stack: nex, access: any, image: "nginx:1.27-alpine", port: 80, memory: 256m}
---
kind: Instance
metadata: {name: acme-web}
spec:
  tenant: acme
  app: web
  env: {MODE: prod, API_KEY: "secret:ACME_WEB_KEY"}
  domains: [www.acme.example.com]
---
kind: Instance
metadata: {name: acme-web-2}
spec: {tenant: acme, app: web, state: stopped, memory: 512m, cpus: "0.5"}
"""


def test_instances_are_recorded_for_the_provisioner_and_round_trip(
    session, store_url, write, tmp_path
) -> None:
    from mno.nex import instances

    write(
        "platform.yaml", INSTANCES.replace("access: any", "access: any, multi_instantiable: true")
    )
    cs = _apply(session, write.root)
    assert [c.ref for c in cs.changes] == [
        "Tenant/acme",
        "App/web",
        "Instance/acme-web",
        "Instance/acme-web-2",
    ]  # apps before instances
    with session(write=False) as s:
        web = instances.view(s, instances.get(s, "acme-web")).as_dict()
        assert (web["status"], web["desired"], web["tenant"], web["app"]) == (
            "staged",
            "running",
            "acme",
            "web",
        )
        assert web["domains"] == ["www.acme.example.com"] and web["memory"] == "256m"
        other = instances.get(s, "acme-web-2")
        assert (other.desired, other.memory, other.cpus, other.work) == (
            "stopped",
            "512m",
            "0.5",
            "pending",
        )
    assert not _diff(session, write.root).has_changes
    with session(write=False) as s:
        first = export.dumps(export.export(s))
    assert "kind: Instance\n" in first
    (tmp_path / "export.yaml").write_text(first)
    empty_store(store_url)
    _apply(session, tmp_path / "export.yaml")
    with session(write=False) as s:
        assert export.dumps(export.export(s)) == first


def test_instance_changes_drift_and_prune_terminates(cli, session, store_url, write) -> None:
    from mno.nex import instances

    write("platform.yaml", INSTANCES.split("---\nkind: Instance\nmetadata: {name: acme-web-2}")[0])
    assert cli("apply", "-f", write.root, "--source", "nex").exit_code == 0
    changed = (
        INSTANCES.replace("MODE: prod", "MODE: staging")
        .replace(', API_KEY: "secret:ACME_WEB_KEY"', "")
        .replace("[www.acme.example.com]", "[acme.example.com]")
        .replace("  app: web\n  env", "  app: web\n  state: stopped\n  env")
    )
    write("platform.yaml", changed.split("---\nkind: Instance\nmetadata: {name: acme-web-2}")[0])
    result = cli("apply", "-f", write.root, "--source", "nex", "-o", "json")
    assert result.exit_code == 0, result.stderr
    fields = [f["field"] for c in json.loads(result.stdout)["changes"] for f in c["fields"]]
    assert fields == ["state", "env", "domains"]
    with session(write=False) as s:
        inst = instances.get(s, "acme-web")
        assert (inst.desired, inst.env, inst.action) == ("stopped", {"MODE": "staging"}, "update")
        assert instances.domains_of(s, inst) == ["acme.example.com"]
    # started by hand: drift, and the next apply stops it again
    assert cli("instance", "start", "acme-web").exit_code == 0
    result = cli("diff", "-f", write.root, "--source", "nex", "-o", "json")
    assert json.loads(result.stdout)["drift"] == [
        {"resource": "Instance/acme-web", "field": "state"}
    ]
    # the tenant and app are fixed
    write("platform.yaml", changed.replace("  app: web\n  state", "  app: other\n  state"))
    result = cli("diff", "-f", write.root, "--source", "nex")
    assert result.exit_code == 2 and "spec.app cannot change" in result.stderr
    # prune terminates (the provisioner removes the container; the data volume stays)
    write("platform.yaml", INSTANCES.split("---\nkind: Instance")[0])
    result = cli("apply", "-f", write.root, "--source", "nex", "--prune")
    assert result.exit_code == 0, result.stderr
    assert "- Instance/acme-web deleted" in result.stdout
    with session(write=False) as s:
        inst = instances.get(s, "acme-web")
        assert (inst.desired, inst.purge_data) == ("terminated", False)
    assert cli("diff", "-f", write.root, "--source", "nex", "--prune").exit_code == 0


def test_a_host_declared_twice_is_a_validation_error(write) -> None:
    write(
        "platform.yaml",
        "hosts:\n  - {name: docker-1, base_url: 'tcp://10.0.0.11:2375'}\n",
    )
    write("hosts.yaml", HOSTS)
    with pytest.raises(BadInput) as err:
        documents.load([write.root])
    assert err.value.message.endswith(
        "hosts.yaml:2:18: metadata.name: host docker-1 is also listed in "
        f"{write.root / 'platform.yaml'}:1 (declare a host in one place only)"
    )
