"""Entity schemas: every field at fault is reported; custom entities come from YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from mno.connec import entities
from mno.errors import BadInput


def errors_of(entity: str, data: dict) -> list[dict[str, str]]:
    with pytest.raises(entities.Invalid) as caught:
        entities.get(entity).validate(data)
    return caught.value.errors


def test_every_canonical_entity_ships_with_a_schema():
    assert sorted(entities.canonical()) == sorted(entities.CANONICAL)
    for ent in entities.canonical().values():
        assert ent.schema["type"] == "object" and ent.schema["required"]


def test_invoice_errors_name_each_field():
    errs = errors_of(
        "invoices",
        {
            "transaction_date": "2024-13-01",
            "currency": "usd",
            "total_amount": 12.5,
            "status": "open",
            "lines": [{"quantity": "two"}],
        },
    )
    fields = {e["field"] for e in errs}
    assert fields == {"transaction_date", "currency", "total_amount", "status", "lines.0.quantity"}
    assert all(e["message"] and not e["message"].startswith("data") for e in errs)


def test_required_fields_and_defaults():
    errs = errors_of("employees", {"first_name": "Ada"})
    assert {e["field"] for e in errs} == {"last_name", "hire_date"}
    assert all(e["message"] == "is required" for e in errs)
    ok = entities.get("invoices").validate(
        {"transaction_date": "2024-01-31", "currency": "EUR", "total_amount": "10.00"}
    )
    assert ok["type"] == "customer"
    opp = errors_of("opportunities", {"name": "Deal", "probability": 101, "stage": "maybe"})
    assert {e["field"] for e in opp} == {"probability", "stage"}


def test_not_an_object_is_refused():
    assert errors_of("items", [1, 2])[0]["message"] == "a record must be a JSON object"  # type: ignore[arg-type]


def test_field_types_drive_filters():
    inv = entities.get("invoices")
    assert inv.field_type("total_amount") == "decimal"
    assert inv.field_type("due_date") == "date"
    assert inv.field_type("number") == "string"
    assert entities.get("organizations").field_type("is_customer") == "boolean"
    assert entities.get("opportunities").field_type("probability") == "integer"
    with pytest.raises(BadInput, match="no field 'nope'"):
        inv.field_type("nope")


def test_custom_entities_from_yaml(tmp_path: Path):
    (tmp_path / "projects.yaml").write_text(
        "name: projects\n"
        "description: Client projects\n"
        "schema:\n"
        "  properties:\n"
        "    title: {type: string, minLength: 1}\n"
        "    budget: {type: string, pattern: '^-?[0-9]+(\\.[0-9]+)?$'}\n"
        "  required: [title]\n"
    )
    found = entities.load_custom(tmp_path)
    assert list(found) == ["projects"]
    proj = found["projects"]
    assert proj.custom and proj.field_type("budget") == "decimal"
    with pytest.raises(entities.Invalid) as caught:
        proj.validate({"budget": "lots"})
    assert {e["field"] for e in caught.value.errors} == {"title", "budget"}
    from mno.events import is_known

    assert is_known("connec.projects.created")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: invoices\nschema: {}\n", "already declared"),
        ("name: batch\nschema: {}\n", "reserved"),
        ("name: Bad-Name\nschema: {}\n", "must match"),
        ("name: things\n", "needs name: and schema:"),
        ("name: things\nschema: {type: array}\n", "must describe an object"),
        ("name: things\nschema: {properties: {a: {type: nonsense}}}\n", "invalid JSON Schema"),
    ],
)
def test_bad_custom_entities_are_refused(tmp_path: Path, text: str, message: str):
    (tmp_path / "x.yaml").write_text(text)
    with pytest.raises(BadInput, match=message):
        entities.load_custom(tmp_path)


def test_the_profile_names_the_custom_folder(tmp_path: Path, mno_env: Path):
    folder = tmp_path / "ents"
    folder.mkdir()
    (folder / "tasks.yaml").write_text("name: tasks\nschema: {required: [title]}\n")
    (mno_env / "config.yaml").write_text(
        f"profiles:\n  default:\n    connec:\n      entities: {folder}\n"
    )
    assert entities.get("tasks").custom
    with pytest.raises(entities.NotFound):
        entities.get("nope")
