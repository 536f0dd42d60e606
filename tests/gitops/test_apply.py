"""Apply, diff, prune and ownership against real SQLite and PostgreSQL stores."""

from __future__ import annotations

import pytest

from mno.errors import BadInput, Conflict, NotFound
from mno.gitops import apply as apply_mod
from mno.gitops import diff, documents, export
from mno.gitops.apply import Options, apply_documents, apply_path
from mno.store import audit
from mno.tenancy import apps, tenants
from tests.conftest import counts
from tests.gitops.conftest import APPS, TENANTS, empty_store, row_counts


def _apply(session, path, **opts):
    with session() as s:
        return apply_path(s, path, **opts)


def _diff(session, path, **opts):
    with session(write=False) as s:
        return diff.compute(s, documents.load([path]), **opts)


def _export(session) -> str:
    with session(write=False) as s:
        return export.dumps(export.export(s))


def test_apply_creates_in_dependency_order_and_records_audit(session, store_url, write) -> None:
    write("tenants.yaml", TENANTS)
    write("apps.yaml", APPS)
    cs = _apply(session, write.root)
    assert cs.summary() == {"create": 6, "update": 0, "delete": 0}
    with session(write=False) as s:
        shop = tenants.view(s, tenants.get(s, "acme-shop"))
        assert shop.parent_key == "acme"
        assert shop.tenant.city == "Paris"
        portal = apps.view(s, apps.get(s, "portal"))
        assert portal.owner_key == "acme" and portal.app.enabled is False
        assert portal.grants == [
            {"tenant": "acme-shop", "can_edit": False, "granted_by": "system", "package": None},
            {"tenant": "globex", "can_edit": True, "granted_by": "system", "package": None},
        ]
        assert apps.get(s, "wiki").env == {"DB_PASSWORD": "secret:WIKI_DB"}
        ok, _ = apps.check_access(s, "portal", "globex")
        assert ok is False  # disabled
    audit_rows, events = counts(store_url)
    # 3 tenants (+ system), 2 contacts, 3 apps, 2 grants, 1 gitops summary
    assert audit_rows == 4 + 2 + 3 + 2 + 1
    assert events == audit_rows


def test_second_apply_changes_nothing(session, store_url, write) -> None:
    write("tenants.yaml", TENANTS)
    write("apps.yaml", APPS)
    _apply(session, write.root)
    before = counts(store_url), row_counts(store_url)
    cs = _apply(session, write.root)
    assert not cs.has_changes
    assert (counts(store_url), row_counts(store_url)) == before
    assert not _diff(session, write.root).has_changes


def test_round_trip_every_kind(session, store_url, write, tmp_path) -> None:
    # resources made by hand through the domain and by apply both export
    write("tenants.yaml", TENANTS)
    write("apps.yaml", APPS)
    _apply(session, write.root)
    with session() as s:
        tenants.create(s, "hand-made", name="By Hand", tier="silo", country="de", zip="10115")
        apps.create(s, "Hand App", code="hand-app", owner="hand-made", labels={"x": "1"})
    first = _export(session)
    kinds = {line for line in first.splitlines() if line.startswith("kind:")}
    assert kinds == {"kind: Tenant", "kind: App"}
    (tmp_path / "export.yaml").write_text(first)
    empty_store(store_url)
    with session() as s:
        cs = apply_path(s, tmp_path / "export.yaml")
    assert cs.summary()["create"] == 8
    second = _export(session)
    assert second == first
    assert not _diff(session, tmp_path / "export.yaml").has_changes


def test_tenth_document_invalid_means_nothing_applied(session, store_url, write) -> None:
    text = "".join(
        f"---\nkind: Tenant\nmetadata: {{name: t{i:02d}}}\nspec: {{name: T{i}}}\n"
        for i in range(1, 10)
    )
    # the tenth passes validation but the domain refuses it (its parent does not exist)
    write("t.yaml", text + "---\nkind: Tenant\nmetadata: {name: t10}\nspec: {parent: nobody}\n")
    with session() as s:
        tenants.ensure_system(s)
    before = counts(store_url), row_counts(store_url)
    with pytest.raises(NotFound, match="nobody"):
        _apply(session, write.root)
    assert (counts(store_url), row_counts(store_url)) == before
    # an app whose owner is missing fails after the tenants were written: all rolled back
    write("t.yaml", text + "---\nkind: App\nmetadata: {name: a10}\nspec: {name: A, owner: zz}\n")
    with pytest.raises(NotFound, match="zz"):
        _apply(session, write.root)
    assert (counts(store_url), row_counts(store_url)) == before
    # a tenth document that fails validation: refused before any write
    write("t.yaml", text + "---\nkind: Tenant\nmetadata: {name: t10}\nspec: {tier: gold}\n")
    with pytest.raises(documents.DocumentErrors):
        _apply(session, write.root)
    assert (counts(store_url), row_counts(store_url)) == before


def test_hand_change_is_drift_and_apply_corrects_it(session, write) -> None:
    write("tenants.yaml", TENANTS)
    _apply(session, write.root)
    with session() as s:
        tenants.update(s, "globex", name="Globex (edited)")
    cs = _diff(session, write.root)
    [change] = cs.changes
    assert change.ref == "Tenant/globex"
    [field] = change.fields
    assert (field.field, field.before, field.after, field.drift, field.conflict) == (
        "name",
        "Globex (edited)",
        "Globex",
        True,
        None,
    )
    _apply(session, write.root)  # drift is corrected without --force-conflicts
    assert not _diff(session, write.root).has_changes


def test_field_set_by_another_source_is_a_conflict(session, store_url, write, tmp_path) -> None:
    write("tenants.yaml", TENANTS)
    _apply(session, write.root, source="team-a")
    other = tmp_path / "other.yaml"
    other.write_text("kind: Tenant\nmetadata: {name: globex}\nspec: {name: Globex B}\n")
    cs = _diff(session, other, source="team-b")
    assert cs.conflicts() == [("Tenant/globex", "name", "team-a")]
    before = counts(store_url)
    with pytest.raises(Conflict, match="managed by 'team-a'"):
        _apply(session, other, source="team-b")
    assert counts(store_url) == before
    _apply(session, other, source="team-b", force_conflicts=True)
    with session(write=False) as s:
        assert tenants.get(s, "globex").name == "Globex B"
    # now team-a is the one in conflict
    assert _diff(session, write.root, source="team-a").conflicts() == [
        ("Tenant/globex", "name", "team-b")
    ]
    # equal values are no conflict
    same = tmp_path / "same.yaml"
    same.write_text(
        "kind: Tenant\nmetadata:\n  name: acme\n  labels: {segment: reseller}\n"
        '  annotations: {mno.io/protect: "true"}\nspec: {tier: silo}\n'
    )
    assert not _diff(session, same, source="team-c").has_changes


def test_prune_with_protection_guard_and_offboard(session, store_url, write, tmp_path) -> None:
    write("tenants.yaml", TENANTS)
    _apply(session, write.root, source="ci")
    apps_file = tmp_path / "apps.yaml"
    apps_file.write_text(
        APPS.replace(
            "grants: [{tenant: globex, can_edit: true}, {tenant: acme-shop}]", "grants: []"
        )
    )
    _apply(session, apps_file, source="apps")
    with session() as s:
        tenants.provision(s, "globex")
    tenants_file = write.root / "tenants.yaml"  # type: ignore[attr-defined]
    tenants_file.write_text(TENANTS.split("---")[0])  # only acme is left in the files
    # without --prune nothing is deleted
    assert _diff(session, tenants_file, source="ci").summary()["delete"] == 0
    cs = _diff(session, tenants_file, source="ci", prune=True)
    assert [c.ref for c in cs.changes if c.action == "delete"] == [
        "Tenant/acme-shop",
        "Tenant/globex",
    ]
    # tenant deletes need --allow-offboard
    before = counts(store_url)
    with pytest.raises(Conflict, match="allow-offboard"):
        _apply(session, tenants_file, source="ci", prune=True)
    assert counts(store_url) == before
    # a prune with no documents, or deleting all it may delete, is refused
    (tmp_path / "empty").mkdir()
    with pytest.raises(Conflict, match="every resource"):
        _apply(session, tmp_path / "empty", source="ci", prune=True, allow_offboard=True)
    assert counts(store_url) == before
    # protection: with acme gone from the files too, acme is kept, the rest needs allow-empty
    cs = _diff(session, tmp_path / "empty", source="ci", prune=True)
    assert cs.protected == ["Tenant/acme"]
    assert len([c for c in cs.changes if c.action == "delete"]) == 2
    # a different source owns none of these: its prune deletes nothing
    assert _diff(session, apps_file, source="apps", prune=True).summary()["delete"] == 0
    cs = _apply(session, tenants_file, source="ci", prune=True, allow_offboard=True)
    assert cs.summary()["delete"] == 2
    with session(write=False) as s:
        names = [v.tenant.key for v in tenants.list_tenants(s)]
        assert names == ["acme"]
        actions = [e.action for e in audit.list_entries(s, target="globex")]
    assert {"tenant.offboarding", "tenant.offboarded", "tenant.delete"} <= set(actions)
    # pruned resources leave the inventory
    assert not _diff(session, tenants_file, source="ci", prune=True).has_changes
    # acme is protected, even with --allow-empty
    cs = _apply(
        session, tmp_path / "empty", source="ci", prune=True, allow_empty=True, allow_offboard=True
    )
    assert cs.protected == ["Tenant/acme"] and not cs.has_changes


def test_prune_all_with_allow_empty(session, write, tmp_path) -> None:
    write("apps.yaml", "kind: Tenant\nmetadata: {name: solo}\nspec: {}\n")
    _apply(session, write.root, source="x")
    (tmp_path / "none").mkdir()
    cs = _apply(
        session, tmp_path / "none", source="x", prune=True, allow_empty=True, allow_offboard=True
    )
    assert cs.summary()["delete"] == 1
    with session(write=False) as s:
        assert tenants.list_tenants(s) == []


def test_dry_run_writes_nothing_but_checks_domain_rules(session, store_url, write) -> None:
    write("tenants.yaml", TENANTS)
    with session() as s:
        tenants.ensure_system(s)
    before = counts(store_url), row_counts(store_url)
    cs = _apply(session, write.root, dry_run=True)
    assert cs.summary()["create"] == 3
    assert (counts(store_url), row_counts(store_url)) == before
    with session() as s:
        tenants.create(s, "taken", domains=["acme.example.com"])
    with pytest.raises(Conflict, match="acme.example.com"):
        _apply(session, write.root, dry_run=True)


def test_immutable_field_and_updates(session, write) -> None:
    write("apps.yaml", APPS)
    write("tenants.yaml", TENANTS)
    _apply(session, write.root)
    env_line = '  env: {DB_PASSWORD: "secret:WIKI_DB"}\n'
    write("apps.yaml", APPS.replace("memory: 256m", "memory: 1g").replace(env_line, ""))
    cs = _diff(session, write.root)
    [change] = cs.changes
    # a field the source no longer sets goes back to its default (server-side apply)
    assert [(f.field, f.before, f.after) for f in change.fields] == [
        ("memory", "256m", "1g"),
        ("env", {"DB_PASSWORD": "secret:WIKI_DB"}, {}),
    ]
    _apply(session, write.root)
    with session(write=False) as s:
        wiki = apps.get(s, "wiki")
        assert (wiki.memory, wiki.env) == ("1g", {})
    assert not _diff(session, write.root).has_changes
    write("apps.yaml", APPS.replace("stack: nex", "stack: cloud"))
    with pytest.raises(BadInput, match="stack cannot change"):
        _diff(session, write.root)


def test_clearing_optional_fields_and_moving_parents(session, write) -> None:
    write("tenants.yaml", TENANTS)
    _apply(session, write.root)
    write(
        "tenants.yaml",
        TENANTS.replace("  address: 1 rue de la Paix\n", "  address: null\n").replace(
            "  parent: acme\n", "  parent: globex\n"
        ),
    )
    cs = _apply(session, write.root)
    assert {f.field for f in cs.changes[0].fields} == {"parent", "address"}
    with session(write=False) as s:
        shop = tenants.view(s, tenants.get(s, "acme-shop"))
        assert shop.parent_key == "globex" and shop.tenant.address in (None, "")
    assert not _diff(session, write.root).has_changes


def test_apply_options_default_source(session, write) -> None:
    write("t.yaml", "kind: Tenant\nmetadata: {name: one}\nspec: {}\n")
    with session() as s:
        cs = apply_documents(s, documents.load([write.root]), Options())  # type: ignore[attr-defined]
    assert cs.source == "default"
    assert apply_mod.DEFAULT_SOURCE == "default"


def test_a_cycle_in_the_documents_is_refused(session, store_url, write) -> None:
    write(
        "t.yaml",
        "kind: Tenant\nmetadata: {name: aa}\nspec: {parent: bb}\n---\n"
        "kind: Tenant\nmetadata: {name: bb}\nspec: {parent: aa}\n",
    )
    with pytest.raises(Conflict, match="cycle"):
        _apply(session, write.root)
    with session() as s:
        tenants.create(s, "cc")
        tenants.create(s, "dd", parent="cc")
    write(
        "t.yaml",
        "kind: Tenant\nmetadata: {name: cc}\nspec: {parent: dd}\n---\n"
        "kind: Tenant\nmetadata: {name: dd}\nspec: {parent: cc}\n",
    )
    with pytest.raises(Conflict, match="cycle"):
        _apply(session, write.root)


def test_concurrent_applies_are_serialised(session, store_url, write) -> None:
    """Two applies of the same documents at once: one creates, the other finds no change."""
    import threading

    write("tenants.yaml", TENANTS)
    write("apps.yaml", APPS)
    with session() as s:
        tenants.ensure_system(s)
    results: list[object] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            results.append(_apply(session, write.root).summary())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == sorted(
        [{"create": 6, "update": 0, "delete": 0}, {"create": 0, "update": 0, "delete": 0}],
        key=str,
    )
