"""Reading and validating documents: every problem at once, with exact positions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mno.gitops import documents
from mno.gitops.documents import DocumentErrors


def _problems(path: Path) -> list[tuple[int, int, str, str]]:
    _, problems = documents.load_with_problems([path])
    return [(p.line, p.column, p.key, p.message) for p in problems]


def test_every_error_is_reported_with_line_column_and_dotted_key(write) -> None:
    path = write(
        "bad.yaml",
        """
        kind: Tenant
        metadata:
          name: acme
        spec:
          tier: gold
          currency: XXX
          domains: [ok.example.com, "not a domain"]
          colour: blue
        ---
        kind: App
        metadata:
          name: Bad_Code
        spec:
          name: App
          port: 70000
        ---
        kind: Nope
        metadata: {name: x}
        """,
    )
    found = _problems(path)
    assert found == [
        (5, 9, "spec.tier", "unknown tier 'gold' (one of: pooled, silo)"),
        (6, 13, "spec.currency", found[1][3]),
        (7, 29, "spec.domains[1]", found[2][3]),
        (8, 3, "spec.colour", "unknown field"),
        (12, 9, "metadata.name", found[4][3]),
        (15, 9, "spec.port", "Input should be less than or equal to 65535"),
        (17, 7, "kind", found[6][3]),
    ]
    assert "XXX" in found[1][3]
    assert "not a domain" in found[2][3]
    assert "Bad_Code" in found[4][3]
    assert "unknown kind 'Nope'" in found[6][3]


def test_missing_required_field_points_at_the_parent(write) -> None:
    path = write(
        "apps.yaml",
        """
        kind: App
        metadata:
          name: crm
        spec:
          access: any
        """,
    )
    assert _problems(path) == [(4, 1, "spec.name", "field required")]


def test_yaml_syntax_error_has_its_position(write) -> None:
    path = write("broken.yaml", "kind: Tenant\nmetadata: {name: a\nspec: {}\n")
    (line, column, key, message), *_ = _problems(path)
    assert (line, key) == (3, "")
    assert column >= 1
    assert message.startswith("not valid YAML")


def test_secrets_only_as_references(write) -> None:
    path = write(
        "app.yaml",
        """
        kind: App
        metadata: {name: wiki}
        spec:
          name: Wiki
          env:
            DB_PASSWORD: hunter2
            API_TOKEN: "secret:API_TOKEN"
            OTHER: "secret:bad name"
            TOKEN_URL: https://auth.example.com/token
        """,
    )
    found = _problems(path)
    assert [(line, col, key) for line, col, key, _ in found] == [
        (6, 18, "spec.env.DB_PASSWORD"),
        (8, 12, "spec.env.OTHER"),
    ]
    assert "secret:NAME" in found[0][3]


def test_duplicates_and_envelope_errors(write) -> None:
    write("a/one.yaml", "kind: Tenant\nmetadata: {name: acme}\nspec: {}\n")
    write(
        "a/b/two.yaml",
        "kind: Tenant\nmetadata: {name: acme, owner: me}\nspec: {}\nextra: 1\n",
    )
    _, problems = documents.load_with_problems([write.root])  # type: ignore[attr-defined]
    texts = [str(p) for p in problems]
    assert len(texts) == 3
    # a/b/two.yaml is read before a/one.yaml, so the duplicate is the one in one.yaml
    assert texts[0].endswith(
        "two.yaml:2:24: metadata.owner: unknown metadata key (expected name, labels, annotations)"
    )
    assert "two.yaml:4:1: extra: unknown top-level key" in texts[1]
    assert "one.yaml:2:18: metadata.name: Tenant/acme is already defined at" in texts[2]


def test_directories_are_read_recursively_in_name_order(write) -> None:
    write("b/z.yaml", "kind: Tenant\nmetadata: {name: zed}\nspec: {}\n")
    write("a/y.yml", "kind: Tenant\nmetadata: {name: why}\nspec: {}\n---\n---\n")
    write(".hidden/x.yaml", "kind: Nope\n")
    write("notes.txt", "not yaml")
    docs = documents.load([write.root])  # type: ignore[attr-defined]
    assert [d.name for d in docs] == ["why", "zed"]
    assert docs[0].file.endswith("a/y.yml")


def test_strict_load_raises_all_problems(write) -> None:
    path = write("x.yaml", "kind: Tenant\nmetadata: {name: A}\nspec: {tier: x}\n")
    with pytest.raises(DocumentErrors) as info:
        documents.load([path])
    assert len(info.value.problems) == 2
    assert info.value.exit_code == 2


def test_platform_file_without_envelope_is_validated(write) -> None:
    path = write("platform.yaml", "apps_domain: apps.example.com\nretention: {events: 7d}\n")
    assert _problems(path) == []
    bad = write("sub/platform.yaml", "apps_domain: x\nretention: {forever: true}\n")
    assert _problems(bad) == [(2, 13, "spec.retention.forever", "unknown field")]


def test_cli_validate_reports_and_exits_2(cli, write) -> None:
    write("ok.yaml", "kind: Tenant\nmetadata: {name: acme}\nspec: {}\n")
    result = cli("validate", "-f", write.root)  # type: ignore[attr-defined]
    assert result.exit_code == 0, result.stderr
    assert "1 documents valid (Tenant: 1)" in result.stderr
    write("bad.yaml", "kind: Tenant\nmetadata: {name: beta}\nspec:\n  tier: gold\n")
    result = cli("validate", "-f", write.root)  # type: ignore[attr-defined]
    assert result.exit_code == 2
    assert "bad.yaml:4:9: spec.tier: unknown tier 'gold' (one of: pooled, silo)" in result.stderr
    result = cli("validate", "-f", write.root, "-o", "json")  # type: ignore[attr-defined]
    assert result.exit_code == 2
    import json

    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert data["problems"][0]["line"] == 4 and data["problems"][0]["column"] == 9


def test_agents_file_is_validated_with_the_agents_model(write) -> None:
    path = write("agents.yaml", "agents:\n  housekeeper:\n    interval: 1h\n    batch_size: 0\n")
    docs, problems = documents.load_with_problems([path])
    assert [d.kind for d in docs] == ["AgentsConfig"]
    assert [(p.line, p.column, p.key) for p in problems] == [
        (4, 17, "spec.agents.housekeeper.batch_size")
    ]
    wrapped = write(
        "other.yaml", "kind: AgentsConfig\nmetadata: {name: agents}\nspec: {heartbeat: 10s}\n"
    )
    assert documents.load_with_problems([wrapped])[1] == []
