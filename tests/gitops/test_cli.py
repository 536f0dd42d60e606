"""The commands: diff exit codes, saved plans and staleness, apply output, export, schema."""

from __future__ import annotations

import json

import pytest

from tests.conftest import counts
from tests.gitops.conftest import APPS, TENANTS, row_counts


@pytest.fixture
def docs(write, store_url):
    write("tenants.yaml", TENANTS)
    write("apps.yaml", APPS)
    return write.root


def test_diff_exit_codes(cli, docs, write) -> None:
    result = cli("diff", "-f", docs)
    assert result.exit_code == 1, result.stderr  # changes
    assert "+ Tenant/acme create" in result.stdout
    assert "6 to create, 0 to update, 0 to delete" in result.stdout
    result = cli("apply", "-f", docs)
    assert result.exit_code == 0
    assert "+ Tenant/acme-shop created\n" in result.stdout
    assert result.stdout.endswith("6 created, 0 updated, 0 deleted\n")
    result = cli("diff", "-f", docs)
    assert result.exit_code == 0, result.stdout  # no changes
    assert "No changes." in result.stdout
    # a hand change: exit 1 and shown as drift
    assert cli("tenant", "update", "globex", "--city", "Springfield").exit_code == 0
    write("tenants.yaml", TENANTS.replace("  metadata: {crm_id: G-1}", "  city: Shelbyville"))
    result = cli("diff", "-f", docs, "-o", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["summary"] == {"create": 0, "update": 1, "delete": 0}
    assert data["changes"][0]["fields"] == [
        {"field": "city", "before": "Springfield", "after": "Shelbyville"},
        {"field": "metadata", "before": {"crm_id": "G-1"}, "after": {}},
    ]
    # errors are 2 or more, never 1
    write("bad.yaml", "kind: Tenant\nmetadata: {name: xx}\nspec: {tier: gold}\n")
    result = cli("diff", "-f", docs)
    assert result.exit_code == 2
    assert "bad.yaml:3:14: spec.tier" in result.stderr
    result = cli("diff", "-f", docs / "missing.yaml")
    assert result.exit_code == 2
    write("bad.yaml", "kind: Tenant\nmetadata: {name: xx}\nspec: {}\n")
    write("apps.yaml", APPS.replace("stack: nex", "stack: cloud"))
    result = cli("diff", "-f", docs)
    assert result.exit_code >= 2
    assert "stack cannot change" in result.stderr


def test_diff_error_from_an_unreachable_store_is_not_1(cli, docs, monkeypatch) -> None:
    monkeypatch.setenv("MNO_DB_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    result = cli("diff", "-f", docs)
    assert result.exit_code == 3, result.stderr


def test_plan_then_apply_plan(cli, docs, tmp_path, store_url) -> None:
    plan = tmp_path / "plan.json"
    result = cli("plan", "-f", docs, "--out", plan)
    assert result.exit_code == 0, result.stderr
    assert "plan written to" in result.stderr
    saved = json.loads(plan.read_text())
    assert saved["summary"] == {"create": 6, "update": 0, "delete": 0}
    assert set(saved["fingerprints"]) >= {"Tenant/acme", "App/portal"}
    result = cli("apply", plan, "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["summary"]["create"] == 6
    assert cli("diff", "-f", docs).exit_code == 0


def test_stale_plan_is_refused(cli, docs, tmp_path, store_url) -> None:
    assert cli("apply", "-f", docs).exit_code == 0
    docs.joinpath("tenants.yaml").write_text(TENANTS.replace("name: Globex", "name: Globex 2"))
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", docs, "--out", plan).exit_code == 0
    # someone changes a target after the plan was made
    assert cli("tenant", "update", "globex", "--region", "North").exit_code == 0
    before = counts(store_url), row_counts(store_url)
    result = cli("apply", plan)
    assert result.exit_code == 1
    assert "the plan is stale: Tenant/globex changed after it was made" in result.stderr
    assert (counts(store_url), row_counts(store_url)) == before
    # a fresh plan applies
    assert cli("plan", "-f", docs, "--out", plan).exit_code == 0
    assert cli("apply", plan).exit_code == 0
    assert cli("diff", "-f", docs).exit_code == 0


def test_plan_of_a_resource_created_meanwhile_is_stale(cli, docs, tmp_path) -> None:
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", docs, "--out", plan).exit_code == 0
    assert cli("tenant", "create", "globex").exit_code == 0
    result = cli("apply", plan)
    assert result.exit_code == 1
    assert "stale" in result.stderr


def test_edited_plan_is_refused(cli, docs, tmp_path) -> None:
    plan = tmp_path / "plan.json"
    assert cli("plan", "-f", docs, "--out", plan).exit_code == 0
    data = json.loads(plan.read_text())
    data["documents"][0]["spec"]["name"] = "Evil"
    plan.write_text(json.dumps(data))
    result = cli("apply", plan)
    assert result.exit_code == 2
    assert "modified after it was made" in result.stderr


def test_apply_conflict_exit_and_force(cli, docs, tmp_path) -> None:
    assert cli("apply", "-f", docs, "--source", "a").exit_code == 0
    other = tmp_path / "b.yaml"
    other.write_text("kind: Tenant\nmetadata: {name: acme}\nspec: {tier: pooled}\n")
    result = cli("apply", "-f", other, "--source", "b")
    assert result.exit_code == 1
    assert "Tenant/acme spec.tier is managed by 'a'" in result.stderr
    result = cli("diff", "-f", other, "--source", "b")
    assert result.exit_code == 1
    assert "[conflict: managed by a]" in result.stdout
    assert cli("apply", "-f", other, "--source", "b", "--force-conflicts").exit_code == 0


def test_dry_run_and_prune_flags(cli, docs, store_url) -> None:
    result = cli("apply", "-f", docs, "--dry-run")
    assert result.exit_code == 0
    assert "dry run: nothing was written" in result.stderr
    assert cli("diff", "-f", docs).exit_code == 1
    assert cli("apply", "-f", docs).exit_code == 0
    docs.joinpath("apps.yaml").unlink()
    docs.joinpath("tenants.yaml").write_text(TENANTS.split("---")[0])
    result = cli("diff", "-f", docs, "--prune")
    assert result.exit_code == 1
    assert "- Tenant/globex delete  (offboard, then delete)" in result.stdout


def test_export_to_directory_and_stdout(cli, docs, tmp_path) -> None:
    assert cli("apply", "-f", docs).exit_code == 0
    out = tmp_path / "export"
    result = cli("export", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yaml")) == [
        "apps/crm.yaml",
        "apps/portal.yaml",
        "apps/wiki.yaml",
        "tenants/acme-shop.yaml",
        "tenants/acme.yaml",
        "tenants/globex.yaml",
    ]
    assert cli("validate", "-f", out).exit_code == 0
    result = cli("export", "--kind", "app")
    assert result.stdout.count("kind: App") == 3 and "kind: Tenant" not in result.stdout
    assert cli("export", "--kind", "nope").exit_code == 2


def test_schema_command() -> None:
    from typer.testing import CliRunner

    from mno.cli import app

    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    kinds = [s["properties"]["kind"]["const"] for s in data["oneOf"]]
    assert {"Tenant", "App", "Platform"} <= set(kinds)
    tenant = json.loads(CliRunner().invoke(app, ["schema", "Tenant"]).stdout)
    spec = tenant["properties"]["spec"]
    target = tenant["$defs"][spec["$ref"].split("/")[-1]] if "$ref" in spec else spec
    assert target["properties"]["tier"]["pattern"] == "^[a-z][a-z0-9-]{0,9}$"  # a tier's name
    assert target["additionalProperties"] is False
    assert CliRunner().invoke(app, ["schema", "Gadget"]).exit_code == 2


def test_example_configs_validate_apply_and_match_the_schema(session, tmp_path) -> None:
    """configs/ is valid, applies cleanly, and the committed JSON Schema is current and
    accepts every example document (and rejects a wrong one)."""
    from pathlib import Path

    import jsonschema
    import yaml

    from mno.gitops import documents, schema
    from mno.gitops.apply import apply_path

    root = Path(__file__).resolve().parents[2] / "configs"
    combined = schema.combined()
    committed = json.loads((root / "mno.schema.json").read_text())
    # the committed copy (for editors) is current; regenerate it with
    # `mno schema --out configs/mno.schema.json` when kinds change
    assert committed == combined, "run: mno schema --out configs/mno.schema.json"
    jsonschema.Draft202012Validator.check_schema(combined)
    validator = jsonschema.Draft202012Validator(committed)
    checked = 0
    for path in sorted(root.rglob("*.yaml")):
        for data in yaml.safe_load_all(path.read_text()):
            if data and "kind" in data:
                assert not list(validator.iter_errors(data)), path
                checked += 1
    assert checked >= 6
    bad = {"kind": "Tenant", "metadata": {"name": "x"}, "spec": {"tier": "Gold tier"}}
    assert list(validator.iter_errors(bad))
    documents.load([root])
    with session() as s:
        cs = apply_path(s, root, source="quickstart")
    assert cs.summary()["create"] >= 6
    with session() as s:
        assert not apply_path(s, root, source="quickstart").has_changes


def test_diff_shows_nested_changes_leaf_by_leaf(cli, docs) -> None:
    assert cli("apply", "-f", docs).exit_code == 0
    docs.joinpath("tenants.yaml").write_text(TENANTS.replace("crm_id: G-1", "crm_id: G-2"))
    result = cli("diff", "-f", docs)
    assert result.exit_code == 1
    assert '    metadata.crm_id: "G-1" → "G-2"\n' in result.stdout
