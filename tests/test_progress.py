"""Long operations report progress through ``on_progress(done, total)``: usage import,
GitOps apply and the billing run call it with counts that grow to the total."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mno import clock
from mno.billing import documents, subscriptions, usage
from mno.billing import run as billing
from mno.gitops import documents as gitops_documents
from mno.gitops.apply import Options, apply_documents
from mno.tenancy import tenants

Session = Callable[..., AbstractContextManager[Any]]

CATALOGUE = """
kind: Metric
metadata: {name: api_calls}
spec: {aggregation: sum}
---
kind: Plan
metadata: {name: pro}
spec:
  currency: EUR
  charges:
    - {kind: fixed, amount: "10.00"}
    - {kind: usage, metric: api_calls, model: per_unit, unit_price: "0.01"}
"""


def increasing(calls: list[tuple[int, int | None]], total: int) -> None:
    assert calls, "on_progress was never called"
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done), calls
    assert done[-1] == total and all(t == total for _, t in calls), calls


def test_usage_import_reports_each_batch(session: Session, tmp_path: Path) -> None:
    rows = "".join(f"acme,api_calls,1,2026-10-0{i % 9 + 1}T00:00:00Z,r{i}\n" for i in range(7))
    f = tmp_path / "u.csv"
    f.write_text("tenant,metric,quantity,at,id\n" + rows)
    calls: list[tuple[int, int | None]] = []
    with session() as s:
        documents.apply_text(s, CATALOGUE)
        tenants.create(s, "acme")
        n = usage.import_file(s, f, on_progress=lambda d, t: calls.append((d, t)), batch=2)
    assert n == 7
    increasing(calls, 7)
    assert len(calls) == 4  # batches of 2, 2, 2, then the last 1


def test_apply_reports_each_change(session: Session, tmp_path: Path) -> None:
    docs = (
        "---\n".join(
            f"kind: Tenant\nmetadata: {{name: t{i}}}\nspec: {{name: T{i}}}\n" for i in range(3)
        )
        + "---\nkind: App\nmetadata: {name: blog}\nspec: {name: Blog, stack: cloud}\n"
    )
    (tmp_path / "docs.yaml").write_text(docs)
    calls: list[tuple[int, int | None]] = []
    with session() as s:
        loaded = gitops_documents.load([tmp_path / "docs.yaml"])
        cs = apply_documents(s, loaded, Options(), lambda d, t: calls.append((d, t)))
    assert len(cs.changes) == 4
    increasing(calls, 4)
    assert len(calls) == 2  # the tenants in one batch, then the app


def test_billing_run_reports_tenants(session: Session, store_url: str) -> None:
    with session() as s:
        documents.apply_text(s, CATALOGUE)
        for key in ("acme", "globex"):
            tenants.create(s, key, currency="EUR")
            subscriptions.create(s, key, "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    calls: list[tuple[int, int | None]] = []
    result = billing.run("2026-10", url=store_url, on_progress=lambda d, t: calls.append((d, t)))
    assert result.as_dict()["invoices"] == 2
    increasing(calls, 2)
