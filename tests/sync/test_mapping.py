"""The compiled page mapper gives what mapping record by record gives."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mno.sync import mapping
from mno.sync.spec import TRANSFORMS, Entity

KEYS = ["id", "name", "email", "n", "when", "flag", "a", "b"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.5+02:00", "1767323045", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)
raw_records = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), values, max_size=8),
    st.lists(values, max_size=3),  # not an object: mapped the plain way
)
paths = st.one_of(
    st.sampled_from(KEYS),
    st.builds(lambda a, b: f"{a}.{b}", st.sampled_from(KEYS), st.sampled_from([*KEYS, "0", "-1"])),
    st.just(""),
)
field_maps = st.one_of(
    paths,
    st.fixed_dictionaries(
        {"source": paths},
        optional={"transform": st.sampled_from(TRANSFORMS), "default": scalars},
    ),
)


@st.composite
def entities(draw: st.DrawFn) -> Entity:
    fields = draw(
        st.dictionaries(st.sampled_from(["name", "email", "n", "x", "y"]), field_maps, max_size=5)
    )
    return Entity.model_validate(
        {
            "canonical": "contact",
            "list": {"path": "/c"},
            "id": draw(st.sampled_from(["id", "a.id", "n"])),
            "updated_at": draw(st.sampled_from([None, "when", "a.when"])),
            "deleted": draw(st.sampled_from([None, {"flag": "flag"}, {"flag": "a.flag"}])),
            "mapping": fields,
            "ignore_fields": draw(st.lists(st.sampled_from(["name", "x", "zz"]), max_size=2)),
        }
    )


def _plain(entity: Entity, raws: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in raws:
        try:
            mapped = mapping.map_record(entity, raw)
        except (ValueError, TypeError, OverflowError) as exc:
            return {"error": type(exc)}
        if mapped is not None:
            out[mapped[0]] = mapped
    return out


@settings(max_examples=300, deadline=None)
@given(entities(), st.lists(raw_records, max_size=6))
def test_page_mapper_matches_the_plain_mapping(entity: Entity, raws: list[Any]) -> None:
    expected = _plain(entity, raws)
    try:
        got = mapping.page_mapper(entity)(raws, lambda *m: m)
    except (ValueError, TypeError, OverflowError) as exc:
        got = {"error": type(exc)}
    assert got == expected
    assert list(got) == list(expected)  # the last record of an id wins, in page order


def test_page_mapper_hashes_without_ignored_fields() -> None:
    entity = Entity.model_validate(
        {
            "canonical": "contact",
            "list": {"path": "/c"},
            "updated_at": "when",
            "deleted": {"flag": "gone"},
            "mapping": {
                "name": "name",
                "email": {"source": "e", "transform": "lower"},
                "seen": "t",
            },
            "ignore_fields": ["seen"],
        }
    )
    raws = [
        {"id": 7, "name": "Ann", "e": "A@X.TEST", "t": 1.5, "when": "2026-01-02T03:04:05Z"},
        {"id": "8", "name": "Bo", "e": None, "t": 2, "gone": 1},
    ]
    out = mapping.page_mapper(entity)(raws, lambda *m: m)
    ext, data, digest, when, deleted, text = out["7"]
    assert data == {"name": "Ann", "email": "a@x.test", "seen": 1.5}
    assert digest == mapping.content_hash({"name": "Ann", "email": "a@x.test"})
    assert text == '{"email":"a@x.test","name":"Ann","seen":1.5}'
    assert when is not None and when.isoformat() == "2026-01-02T03:04:05+00:00"
    assert not deleted and out["8"][4] is True
    # the volatile field does not change the hash
    again = mapping.page_mapper(entity)([{**raws[0], "t": 99}], lambda *m: m)
    assert again["7"][2] == digest
