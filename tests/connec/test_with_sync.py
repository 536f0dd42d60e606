"""Connec and sync share the records: an organisation pulled by a connector from an
external API (a real local API on 127.0.0.1) is read and changed by another app over
Connec, and the change is pushed back to the external API by the sync engine's push
path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sync.api import Api, Server, connector_yaml


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    return sqlite_url


def test_an_app_changes_a_synced_organisation_and_the_sync_pushes_it(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from mno.connec import access, queries
    from mno.connec.writes import Op, apply
    from mno.store.db import session_scope
    from mno.sync import connections, engine, push, spec
    from mno.tenancy import apps, tenants

    api = Api(records=3)
    with Server(api) as server:
        text = connector_yaml("books-api", "books", server.url).replace(
            "canonical: contact", "canonical: organizations"
        )
        path = tmp_path / "books.yaml"
        path.write_text(text)
        monkeypatch.setenv("MNO_SECRET_BOOKS_API_TOKEN", "t0ken")
        with session_scope(store_url) as s:
            tenants.create(s, "acme")
            apps.create(s, "books", code="books", stack="connector", owner="acme")
            apps.create(s, "CRM", code="crm", owner="acme")
            spec.apply(s, spec.load_file(path), str(path))
            name = connections.add(s, "acme", "books-api").name
        engine.run(name, db_url=store_url, sleep=lambda _s: None)

        with session_scope(store_url) as s:
            crm = access.writer_for(s, apps.get(s, "crm"), "acme")
            page = queries.list_records(s, crm, "organizations", orderby="name")
            assert len(page.records) == 3
            target = page.records[0]
            out = apply(
                s,
                crm,
                [
                    Op(
                        "patch",
                        "organizations",
                        {"name": "Renamed by crm"},
                        id=target["id"],
                        version=target["version"],
                    )
                ],
            )
            assert out.results[0].status == 200
            history = queries.history(s, crm, "organizations", target["id"])
        assert [h["source"] for h in history][-1] == "app:crm"
        assert history[0]["source"] != "app:crm"  # the connector pulled it first

        pushed = push.deliver_tenant(crm.tenant_id, "test", db_url=store_url)
        assert pushed == 1
        names = sorted(r["name"] for r in api.rows.values())
        assert "Renamed by crm" in names and len(names) == 3
