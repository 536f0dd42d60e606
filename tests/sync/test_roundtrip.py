"""`mno connector validate`: each entity's pull and push mappings round-trip."""

from __future__ import annotations

import json
from pathlib import Path

from tests.sync.api import Api, connector_yaml


def _file(tmp_path: Path, text: str, name: str = "crm.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_test_connector_round_trips_with_generated_samples(cli, tmp_path) -> None:
    path = _file(tmp_path, connector_yaml("crm", "crm", "http://127.0.0.1:9"))
    r = cli("connector", "validate", path)
    assert r.exit_code == 0, r.stderr
    assert "3 pushed field(s) of crm round-trip" in r.stderr
    rows = cli.json("connector", "validate", path)
    by_field = {row["field"]: row for row in rows}
    assert {k: v["status"] for k, v in by_field.items()} == {
        "name": "ok",
        "email": "ok",
        "phone": "ok",
        "fetched_at": "pull only",
    }
    # email is lowered: its generated sample is one the transform keeps
    assert by_field["email"]["sample"] == by_field["email"]["back"] == "sample@example.test"
    assert by_field["name"]["origin"] == "generated"


def test_a_sample_record_shows_a_lossy_transform(cli, tmp_path) -> None:
    path = _file(tmp_path, connector_yaml("crm", "crm", "http://127.0.0.1:9"))
    sample = _file(tmp_path, json.dumps({"name": "Ann", "email": "Ann@X.Test"}), "s.json")
    r = cli("connector", "validate", path, "--sample", sample)
    assert r.exit_code == 1
    assert "1 of 3 pushed field(s) of crm do not round-trip" in r.stderr
    [line] = [x for x in r.stdout.splitlines() if "email" in x]
    assert line.split("\t") == [
        "contact",
        "email",
        "differs",
        "Ann@X.Test",
        "ann@x.test",
    ]
    rows = json.loads(
        cli(*["connector", "validate", path, "--sample", sample, "-o", "json"]).stdout
    )
    name = next(x for x in rows if x["field"] == "name")
    assert (name["origin"], name["status"]) == ("sample", "ok")
    assert next(x for x in rows if x["field"] == "phone")["origin"] == "generated"


def test_a_field_pushed_elsewhere_or_never_pulled_fails(cli, tmp_path) -> None:
    text = connector_yaml("crm", "crm", "http://127.0.0.1:9").replace(
        "        name: name\n        email: email\n",
        "        full_name: name\n        email: email\n        nick: nickname\n",
    )
    path = _file(tmp_path, text)
    r = cli("connector", "validate", path, "-o", "json")
    assert r.exit_code == 1
    rows = {row["field"]: row for row in json.loads(r.stdout)}
    assert rows["name"]["status"] == "moved"
    assert rows["name"]["back"] == {"full_name": "sample name"}
    assert rows["nickname"]["status"] == "not pulled" and rows["nickname"]["source"] == "nick"
    assert rows["email"]["round_trips"] is True


def test_bad_files_exit_2(cli, tmp_path) -> None:
    bad = _file(tmp_path, "name: crm\napp: crm\nbase_url: ftp://x\nentities: []\n", "bad.yaml")
    r = cli("connector", "validate", bad)
    assert r.exit_code == 2 and "bad.yaml:3: base_url:" in r.stderr
    r = cli("connector", "validate", str(tmp_path / "missing.yaml"))
    assert r.exit_code == 2 and "no such file" in r.stderr
    good = _file(tmp_path, connector_yaml("crm", "crm", "http://127.0.0.1:9"))
    not_json = _file(tmp_path, "{nope", "s.json")
    r = cli("connector", "validate", good, "--sample", not_json)
    assert r.exit_code == 2 and "invalid sample record" in r.stderr
    r = cli("connector", "validate", good, "--sample", str(tmp_path / "none.json"))
    assert r.exit_code == 2 and "cannot read sample" in r.stderr
    r = cli("connector", "validate", good, "--entity", "nope")
    assert r.exit_code == 2 and "has no entity 'nope'" in r.stderr
    listed = _file(tmp_path, "[1, 2]", "list.json")
    assert cli("connector", "validate", good, "--sample", listed).exit_code == 2
    # a sample the transforms cannot read: int of a word
    text = connector_yaml("crm", "crm", "http://127.0.0.1:9").replace(
        "      phone: phone\n", "      phone:\n        source: phone\n        transform: int\n", 1
    )
    sample = _file(tmp_path, json.dumps({"phone": "call me"}), "p.json")
    r = cli("connector", "validate", _file(tmp_path, text, "int.yaml"), "--sample", sample)
    assert r.exit_code == 2 and "entity contact: the sample does not map" in r.stderr


def test_a_stored_connector_by_name(world, cli) -> None:
    world.connector("crm", "crm", Api(records=0))
    assert cli("connector", "validate", "crm").exit_code == 0
    r = cli("connector", "validate", "nope")
    assert r.exit_code == 1 and "nope" in r.stderr


def test_a_yaml_sample_per_entity(cli, tmp_path) -> None:
    path = _file(tmp_path, connector_yaml("crm", "crm", "http://127.0.0.1:9"))
    sample = _file(tmp_path, "entities:\n  contact:\n    phone: 5551234\n", "s.yaml")
    r = cli("connector", "validate", path, "--sample", sample, "-o", "json")
    assert r.exit_code == 0, r.stderr
    phone = next(x for x in json.loads(r.stdout) if x["field"] == "phone")
    assert (phone["origin"], phone["sample"], phone["back"]) == ("sample", 5551234, 5551234)
    other = _file(tmp_path, "entities:\n  invoice:\n    phone: 1\n", "o.yaml")
    rows = json.loads(cli("connector", "validate", path, "--sample", other, "-o", "json").stdout)
    assert {x["origin"] for x in rows} == {"generated"}  # nothing given for contact
