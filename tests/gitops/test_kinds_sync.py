"""Connector and Connection kinds (the sync area) through apply, diff, export and prune."""

from __future__ import annotations

import pytest

pytest.importorskip("mno.sync.spec")

from mno.errors import BadInput  # noqa: E402
from mno.gitops import diff, documents, export  # noqa: E402
from mno.gitops.apply import apply_path  # noqa: E402
from tests.gitops.conftest import APPS, TENANTS, empty_store  # noqa: E402

SYNC = """
kind: Connector
metadata: {name: crm-sync}
spec:
  app: crm
  base_url: https://crm.example.com/api/
  auth: {type: bearer, token: "secret:CRM_TOKEN"}
  entities:
    - canonical: contact
      list: {path: /contacts}
      mapping:
        email: email
        name: {source: full_name, transform: strip}
    - canonical: company
      list: {path: /companies}
      mapping:
        name: name
---
kind: Connection
metadata: {name: acme/crm-sync}
spec:
  entities: [contact]
  pull: true
  push: false
  credentials: {token: "secret:ACME_CRM_TOKEN"}
"""


def _apply(session, path, **opts):
    with session() as s:
        return apply_path(s, path, **opts)


def _diff(session, path, **opts):
    with session(write=False) as s:
        return diff.compute(s, documents.load([path]), **opts)


def test_connector_and_connection_round_trip(session, store_url, write, tmp_path) -> None:
    write("tenants.yaml", TENANTS)
    write("apps.yaml", APPS)
    write("sync.yaml", SYNC)
    cs = _apply(session, write.root)
    assert [c.ref for c in cs.changes if c.kind in ("Connector", "Connection")] == [
        "Connector/crm-sync",
        "Connection/acme/crm-sync",
    ]
    assert not _diff(session, write.root).has_changes
    with session(write=False) as s:
        first = export.dumps(export.export(s))
    assert "kind: Connection\n" in first and "base_url: https://crm.example.com/api\n" in first
    (tmp_path / "export.yaml").write_text(first)
    empty_store(store_url)
    _apply(session, tmp_path / "export.yaml")
    with session(write=False) as s:
        assert export.dumps(export.export(s)) == first


def test_connection_pause_update_and_prune(session, write) -> None:
    from mno.sync import connections

    write("tenants.yaml", TENANTS)
    write("apps.yaml", APPS)
    write("sync.yaml", SYNC)
    _apply(session, write.root, source="s")
    write("sync.yaml", SYNC.replace("  push: false\n", "  push: false\n  paused: true\n"))
    cs = _apply(session, write.root, source="s")
    assert [(c.ref, [f.field for f in c.fields]) for c in cs.changes] == [
        ("Connection/acme/crm-sync", ["paused"])
    ]
    with session(write=False) as s:
        assert connections.get(s, "acme/crm-sync").paused is True
    # the connector's mapping changes in place
    write("sync.yaml", SYNC.replace("transform: strip", "transform: lower"))
    cs = _diff(session, write.root, source="s")
    assert {(c.ref, f.field) for c in cs.changes for f in c.fields} == {
        ("Connector/crm-sync", "entities"),
        ("Connection/acme/crm-sync", "paused"),
    }
    _apply(session, write.root, source="s")
    assert not _diff(session, write.root, source="s").has_changes
    # every other field changes in place too, through the sync domain
    changed = (
        SYNC.replace("transform: strip", "transform: lower")
        .replace("entities: [contact]", "entities: [contact, company]")
        .replace(
            "push: false", "push: true\n  preemption: app\n  base_url: https://acme.example.com"
        )
        .replace("secret:ACME_CRM_TOKEN", "secret:ACME_CRM_TOKEN_2")
    )
    write("sync.yaml", changed)
    cs = _apply(session, write.root, source="s")
    assert {(c.ref, f.field) for c in cs.changes for f in c.fields} == {
        ("Connection/acme/crm-sync", "entities"),
        ("Connection/acme/crm-sync", "push"),
        ("Connection/acme/crm-sync", "preemption"),
        ("Connection/acme/crm-sync", "base_url"),
        ("Connection/acme/crm-sync", "credentials"),
    }
    with session(write=False) as s:
        row = connections.get(s, "acme/crm-sync")
        assert (row.entities, row.push_enabled, row.preemption, row.base_url) == (
            ["contact", "company"],
            True,
            "app",
            "https://acme.example.com",
        )
        assert row.credentials == {"token": "secret:ACME_CRM_TOKEN_2"}
    assert not _diff(session, write.root, source="s").has_changes
    # a hand change through the domain shows as drift and the next apply restores it
    with session() as s:
        connections.update(s, "acme/crm-sync", entities=["contact"], preemption=None)
    cs = _diff(session, write.root, source="s")
    assert [(f.field, f.before, f.after, f.drift) for c in cs.changes for f in c.fields] == [
        ("entities", ["contact"], ["contact", "company"], True),
        ("preemption", None, "app", True),
    ]
    _apply(session, write.root, source="s")
    assert not _diff(session, write.root, source="s").has_changes
    # the domain's rules hold: a connection needs a direction
    no_direction = changed.replace("pull: true", "pull: false")
    write("sync.yaml", no_direction.replace("push: true", "push: false"))
    with pytest.raises(BadInput, match="needs push or pull"):
        _apply(session, write.root, source="s")
    # prune removes the connection when it leaves the files
    write("sync.yaml", changed.split("---")[0])
    cs = _apply(session, write.root, source="s", prune=True)
    assert [(c.ref, c.action) for c in cs.changes] == [("Connection/acme/crm-sync", "delete")]
    with session(write=False) as s:
        assert connections.page_connections(s).rows == []


def test_connector_spec_errors_have_positions(write) -> None:
    path = write(
        "bad.yaml",
        """
        kind: Connector
        metadata: {name: crm-sync}
        spec:
          app: crm
          base_url: ftp://x
          auth: {type: bearer, token: plain}
          entities: []
        """,
    )
    _, problems = documents.load_with_problems([path])
    found = {(p.line, p.key) for p in problems}
    assert (5, "spec.base_url") in found
    assert (6, "spec.auth.token") in found
    assert (7, "spec.entities") in found


def test_bare_connector_documents_in_a_connectors_directory(write) -> None:
    path = write(
        "connectors/crm.yaml",
        """
        name: crm-sync
        app: crm
        base_url: https://crm.example.com
        entities:
          - canonical: contact
            list: {path: /contacts}
            mapping: {email: 7}
        """,
    )
    docs, problems = documents.load_with_problems([path])
    assert [d.ref for d in docs] == ["Connector/crm-sync"]
    assert [(p.line, p.column, p.key) for p in problems] == [
        (7, 22, "spec.entities[0].mapping.email")
    ]
    assert problems[0].message.startswith("Input should be a valid string; or ")
    write("connectors/crm.yaml", "name: Bad Name\napp: crm\n")
    _, problems = documents.load_with_problems([path])
    assert (1, "metadata.name") in {(p.line, p.key) for p in problems}


def test_connection_update_command_is_drift_for_the_next_diff(cli, store_url, write) -> None:
    import json

    write("tenants.yaml", TENANTS)
    write("apps.yaml", APPS)
    write("sync.yaml", SYNC)
    assert cli("apply", "-f", write.root).exit_code == 0
    result = cli("connection", "update", "acme/crm-sync", "--push", "--preemption", "platform")
    assert (result.exit_code, result.stderr) == (0, "✓ connection acme/crm-sync updated\n")
    result = cli("connection", "update", "acme/crm-sync", "--credential", "token=plain")
    assert result.exit_code == 2
    assert "credential token must be a secret reference" in result.stderr
    result = cli("diff", "-f", write.root, "-o", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["drift"] == [
        {"resource": "Connection/acme/crm-sync", "field": "push"}
    ]
