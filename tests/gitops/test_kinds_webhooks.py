"""WebhookEndpoint and NotificationRule kinds: named by documents, linked by id."""

from __future__ import annotations

import pytest

pytest.importorskip("mno.webhooks.endpoints")
pytest.importorskip("mno.notify.rules")

from mno.gitops import diff, documents, export  # noqa: E402
from mno.gitops.apply import apply_path  # noqa: E402
from tests.gitops.conftest import TENANTS, empty_store  # noqa: E402

HOOKS = """
kind: WebhookEndpoint
metadata: {name: crm-hook}
spec:
  url: https://hooks.example.com/mno
  events: [tenant.*, app.created]
  rate_limit: 50
  timeout: 10s
  headers: {X-Api-Key: "secret:HOOK_KEY"}
---
kind: WebhookEndpoint
metadata: {name: acme-hook}
spec:
  url: https://acme.example.com/in
  tenant: acme
  ordered: true
  enabled: false
---
kind: NotificationRule
metadata: {name: welcome}
spec:
  events: [tenant.created]
  email_to: tenant-primary
  template: tenant_welcome
"""


@pytest.fixture(autouse=True)
def master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.fernet import Fernet

    monkeypatch.setenv("MNO_MASTER_KEY", Fernet.generate_key().decode())


def _apply(session, path, **opts):
    with session() as s:
        return apply_path(s, path, **opts)


def _diff(session, path, **opts):
    with session(write=False) as s:
        return diff.compute(s, documents.load([path]), **opts)


def _export(session) -> str:
    with session(write=False) as s:
        return export.dumps(export.export(s))


def test_webhook_kinds_round_trip(session, store_url, write, tmp_path) -> None:
    from mno.notify import rules
    from mno.webhooks import endpoints

    write("tenants.yaml", TENANTS)
    write("hooks.yaml", HOOKS)
    cs = _apply(session, write.root)
    assert cs.summary()["create"] == 6
    assert not _diff(session, write.root).has_changes
    # one endpoint made by hand gets a synthetic name and exports too
    with session() as s:
        hand = endpoints.add(s, "https://hand.example.com/x", events="invoice.*")
        rules.add(s, events="app.*", email_to="ops@example.com", template="tenant_welcome")
    first = _export(session)
    assert f"name: endpoint-{str(hand.id).replace('-', '')[:12]}\n" in first
    assert "secret:HOOK_KEY" in first and "whsec" not in first
    (tmp_path / "export.yaml").write_text(first)
    empty_store(store_url)
    _apply(session, tmp_path / "export.yaml")
    assert _export(session) == first
    assert not _diff(session, tmp_path / "export.yaml").has_changes


def test_webhook_updates_replacement_and_prune(session, write) -> None:
    from mno.notify import rules
    from mno.webhooks import endpoints

    write("tenants.yaml", TENANTS)
    write("hooks.yaml", HOOKS)
    _apply(session, write.root, source="hooks")
    with session() as s:
        [hook] = [e for e in endpoints.list_endpoints(s) if e.url.startswith("https://hooks")]
        endpoints.update(s, str(hook.id), timeout="20s", description="not managed")
        [before] = rules.list_rules(s)
    cs = _diff(session, write.root, source="hooks")
    [change] = cs.changes
    assert change.ref == "WebhookEndpoint/crm-hook"
    assert [(f.field, f.before, f.after, f.drift) for f in change.fields] == [
        ("timeout", "20s", "10s", True)
    ]
    text = HOOKS.replace("rate_limit: 50", "rate_limit: 5").replace(
        "template: tenant_welcome", "template: instance_failed"
    )
    write("hooks.yaml", text.replace("  enabled: false\n", ""))
    cs = _apply(session, write.root, source="hooks")
    assert {(c.ref, f.field) for c in cs.changes for f in c.fields} == {
        ("WebhookEndpoint/crm-hook", "rate_limit"),
        ("WebhookEndpoint/crm-hook", "timeout"),
        ("WebhookEndpoint/acme-hook", "enabled"),
        ("NotificationRule/welcome", "template"),
    }
    with session(write=False) as s:
        [after] = rules.list_rules(s)
        assert after.template == "instance_failed" and after.id != before.id
        assert {e.enabled for e in endpoints.list_endpoints(s)} == {True}
        assert hook.id in {e.id for e in endpoints.list_endpoints(s)}
    assert not _diff(session, write.root, source="hooks").has_changes
    # prune: the rule and one endpoint leave the files
    write("hooks.yaml", text.split("---")[0])
    cs = _apply(session, write.root, source="hooks", prune=True)
    assert sorted((c.ref, c.action) for c in cs.changes) == [
        ("NotificationRule/welcome", "delete"),
        ("WebhookEndpoint/acme-hook", "delete"),
    ]
    with session(write=False) as s:
        assert [e.id for e in endpoints.list_endpoints(s)] == [hook.id]
        assert rules.list_rules(s) == []
