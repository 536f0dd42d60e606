"""Pruning apps goes through the catalogue's delete, with its guards."""

from __future__ import annotations

import pytest

from mno.errors import Conflict, NotFound
from mno.tenancy import apps
from tests.gitops.test_apply import _apply, _diff

TWO = """
kind: App
metadata: {name: keep}
spec: {name: Keep}
---
kind: App
metadata: {name: drop}
spec: {name: Drop}
"""


def test_prune_deletes_an_app_no_longer_declared(session, write) -> None:
    path = write("apps.yaml", TWO)
    _apply(session, path, source="apps")
    path.write_text(TWO.split("---")[0])
    cs = _diff(session, path, source="apps", prune=True)
    assert [c.ref for c in cs.changes if c.action == "delete"] == ["App/drop"]
    _apply(session, path, source="apps", prune=True)
    with session(write=False) as s:
        apps.get(s, "keep")
        with pytest.raises(NotFound):
            apps.get(s, "drop")
    assert not _diff(session, path, source="apps", prune=True).has_changes


def test_prune_refuses_an_app_still_in_use(session, write) -> None:
    from mno.store.models.sync import SyncConnector

    path = write("apps.yaml", TWO)
    _apply(session, path, source="apps")
    with session() as s:
        s.add(SyncConnector(name="c", app_id=apps.get(s, "drop").id, spec={}, spec_hash="x"))
    path.write_text(TWO.split("---")[0])
    with pytest.raises(Conflict, match="still used"):
        _apply(session, path, source="apps", prune=True)
    with session(write=False) as s:
        apps.get(s, "drop")
