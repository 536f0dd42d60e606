"""The normalised-MRR rollup, kept in step with invoices, lines, subscriptions and tenants.

``mno.reports.mrr`` sums the recurring lines of billed invoices per currency, timezone and
service period (clamped to the part the subscription covers), then spreads those sums over
months in Python. ``report_mrr_period`` holds those sums ahead of time, keyed by everything
the reading query filters or groups on, so it reads a few rows instead of every line:

``(dated, currency, timezone, issued_on, period_start, period_end, start_at, end_at)
-> lines, amount_minor``

- ``dated`` is 1 for a line with a service period, 0 for one without (a manual invoice's:
  it counts in its month of issue; its period and timezone columns hold its invoice's
  issue time and ``''``);
- ``issued_on`` is the UTC day of the invoice's issue (the read bounds it by whole days);
- ``period_start``/``period_end`` are the line's period, ``start_at``/``end_at`` the same
  clamped to the subscription (from its trial end or start, up to its cancellation);
- ``amount_minor`` is signed: a credit note's lines subtract.

What changes a row: an invoice's billed state, issue time, currency, kind or tenant; a
line's insert, delete or update; a subscription's start, trial end or cancellation (its
lines move between periods); a tenant's timezone. Triggers apply each write's difference
with an UPSERT increment in the writing statement's transaction, like the monthly rollups
(``mno.reports.rollup``): on PostgreSQL per statement over transition tables for invoices
and lines (a billing run writes them in bulk), per row for subscriptions and tenants
(changed one at a time); on SQLite per row. ``rebuild_sql()`` recomputes the table with
one ``INSERT … SELECT … GROUP BY`` (``mno report rebuild``; the migration backfills with it).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mno.store import audit

TABLE = "report_mrr_period"
BILLED = "('issued', 'paid')"
RECURRING = "('fixed', 'bundle')"
KEY = "dated, currency, timezone, issued_on, period_start, period_end, start_at, end_at"
COLS = f"{KEY}, lines, amount_minor"

_SQLITE_TRIGGERS = (
    "report_mrr_invoice_update",
    "report_mrr_invoice_delete",
    "report_mrr_line_insert",
    "report_mrr_line_delete",
    "report_mrr_line_update",
    "report_mrr_subscription_update",
    "report_mrr_subscription_delete",
    "report_mrr_tenant_update",
)
_PG_STATEMENT = {
    "billing_invoice": ("report_mrr_invoice_update", "report_mrr_invoice_delete"),
    "billing_invoice_line": (
        "report_mrr_line_insert",
        "report_mrr_line_update",
        "report_mrr_line_delete",
    ),
}
_PG_ROW = {
    "billing_subscription": ("report_mrr_subscription_update", "report_mrr_subscription_delete"),
    "tenant": ("report_mrr_tenant_update",),
}
_PG_FUNCTIONS = (
    "report_mrr_invoice_rollup",
    "report_mrr_line_rollup",
    "report_mrr_subscription_rollup",
    "report_mrr_tenant_rollup",
)


def _day(col: str, dialect: str) -> str:
    """``YYYY-MM-DD`` of a UTC timestamp column."""
    if dialect == "postgresql":
        return f"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    return f"substr({col}, 1, 10)"


def _rows(
    sign: int,
    dialect: str,
    *,
    inv: str = "i",
    ln: str = "l",
    tz: str = "t.timezone",
    begins: str = "coalesce(s.trial_ends_at, s.started_at)",
    cancel: str = "s.cancel_at",
    source: str,
    where: str = "",
) -> str:
    """Rollup rows (signed by ``sign``) of the recurring lines ``ln`` of billed invoices
    ``inv`` read ``source``; the subscription's start and cancellation and the tenant's
    timezone are the expressions given (a trigger passes its OLD or NEW values)."""
    ps, pe, at = f"{ln}.period_start", f"{ln}.period_end", f"{inv}.issued_at"
    undated = f"{ps} IS NULL"
    return (
        f"SELECT CASE WHEN {undated} THEN 0 ELSE 1 END AS dated, {inv}.currency AS currency, "
        f"CASE WHEN {undated} THEN '' ELSE {tz} END AS timezone, "
        f"{_day(at, dialect)} AS issued_on, "
        f"CASE WHEN {undated} THEN {at} ELSE {ps} END AS period_start, "
        f"CASE WHEN {undated} THEN {at} ELSE {pe} END AS period_end, "
        f"CASE WHEN {undated} THEN {at} WHEN {begins} > {ps} THEN {begins} ELSE {ps} END "
        "AS start_at, "
        f"CASE WHEN {undated} THEN {at} WHEN {cancel} < {pe} THEN {cancel} ELSE {pe} END "
        "AS end_at, "
        f"{sign} AS lines, "
        f"{sign} * {ln}.amount_minor * (CASE WHEN {inv}.kind = 'credit_note' THEN -1 ELSE 1 END)"
        f" AS amount_minor {source} "
        f"WHERE {inv}.status IN {BILLED} AND {at} IS NOT NULL AND {ln}.kind IN {RECURRING} "
        f"AND ({ps} IS NULL OR {pe} IS NOT NULL){where}"
    )


def _upsert(parts: list[str]) -> str:
    """The parts' rows summed per key, added to the table; keys that cancel out are left."""
    union = " UNION ALL ".join(parts)
    return (
        f"INSERT INTO {TABLE} ({COLS}) SELECT {KEY}, sum(lines), sum(amount_minor) "
        f"FROM ({union}) AS d GROUP BY {KEY} "
        "HAVING sum(lines) <> 0 OR sum(amount_minor) <> 0 "
        f"ON CONFLICT ({KEY}) DO UPDATE SET lines = {TABLE}.lines + excluded.lines, "
        f"amount_minor = {TABLE}.amount_minor + excluded.amount_minor;"
    )


_SUB = "LEFT JOIN billing_subscription AS s ON s.id = l.subscription_id"


def _of_invoice(inv: str, sign: int, dialect: str, source: str = "") -> str:
    """The lines of invoice rows ``inv``: a trigger's row, or the rows of ``source``."""
    if source:
        src = (
            f"FROM {source} JOIN billing_invoice_line AS l ON l.invoice_id = {inv}.id "
            f"JOIN tenant AS t ON t.id = {inv}.tenant_id {_SUB}"
        )
        return _rows(sign, dialect, inv=inv, source=src)
    src = f"FROM billing_invoice_line AS l JOIN tenant AS t ON t.id = {inv}.tenant_id {_SUB}"
    return _rows(sign, dialect, inv=inv, source=src, where=f" AND l.invoice_id = {inv}.id")


def _of_line(ln: str, sign: int, dialect: str, source: str = "") -> str:
    """Line rows ``ln`` (a trigger's row, or the rows of ``source``) through their
    invoices."""
    joins = (
        "JOIN tenant AS t ON t.id = i.tenant_id "
        f"LEFT JOIN billing_subscription AS s ON s.id = {ln}.subscription_id"
    )
    if source:
        src = f"FROM {source} JOIN billing_invoice AS i ON i.id = {ln}.invoice_id {joins}"
        return _rows(sign, dialect, ln=ln, source=src)
    src = f"FROM billing_invoice AS i {joins}"
    return _rows(sign, dialect, ln=ln, source=src, where=f" AND i.id = {ln}.invoice_id")


def _of_subscription(sub: str, sign: int, dialect: str, *, gone: bool = False) -> str:
    """The lines of subscription row ``sub`` with its values (or none, once ``gone``)."""
    src = (
        "FROM billing_invoice_line AS l JOIN billing_invoice AS i ON i.id = l.invoice_id "
        "JOIN tenant AS t ON t.id = i.tenant_id"
    )
    begins = "NULL" if gone else f"coalesce({sub}.trial_ends_at, {sub}.started_at)"
    cancel = "NULL" if gone else f"{sub}.cancel_at"
    return _rows(
        sign,
        dialect,
        begins=begins,
        cancel=cancel,
        source=src,
        where=f" AND l.subscription_id = {sub}.id",
    )


def _of_tenant(ten: str, sign: int, dialect: str) -> str:
    """The lines of tenant row ``ten``'s invoices, in its timezone."""
    src = f"FROM billing_invoice AS i JOIN billing_invoice_line AS l ON l.invoice_id = i.id {_SUB}"
    return _rows(
        sign, dialect, tz=f"{ten}.timezone", source=src, where=f" AND i.tenant_id = {ten}.id"
    )


_MOVES_INVOICE = (
    f"(OLD.status IN {BILLED} AND OLD.issued_at IS NOT NULL) IS NOT "
    f"(NEW.status IN {BILLED} AND NEW.issued_at IS NOT NULL) "
    "OR OLD.issued_at IS NOT NEW.issued_at OR OLD.currency IS NOT NEW.currency "
    "OR OLD.kind IS NOT NEW.kind OR OLD.tenant_id IS NOT NEW.tenant_id"
)
_MOVES_SUBSCRIPTION = (
    "OLD.id IS NOT NEW.id OR OLD.started_at IS NOT NEW.started_at "
    "OR OLD.trial_ends_at IS NOT NEW.trial_ends_at OR OLD.cancel_at IS NOT NEW.cancel_at"
)


def _row_triggers(dialect: str) -> dict[str, str]:
    """Trigger bodies (statements) per row trigger shared by both stores: subscriptions
    and tenants."""
    return {
        "report_mrr_subscription_update": _upsert(
            [_of_subscription("OLD", -1, dialect), _of_subscription("NEW", 1, dialect)]
        ),
        "report_mrr_subscription_delete": _upsert(
            [
                _of_subscription("OLD", -1, dialect),
                _of_subscription("OLD", 1, dialect, gone=True),
            ]
        ),
        "report_mrr_tenant_update": _upsert(
            [_of_tenant("OLD", -1, dialect), _of_tenant("NEW", 1, dialect)]
        ),
    }


def _sqlite_triggers() -> list[str]:
    d = "sqlite"

    def counts(ln: str) -> str:
        # a line counts only when recurring on a billed invoice: a draft's lines (a
        # billing run writes many) skip the trigger's program after one probe
        return (
            f"({ln}.kind IN {RECURRING} AND EXISTS (SELECT 1 FROM billing_invoice AS b "
            f"WHERE b.id = {ln}.invoice_id AND b.status IN {BILLED} "
            "AND b.issued_at IS NOT NULL))"
        )

    line_changes = (
        "OLD.kind IS NOT NEW.kind OR OLD.amount_minor IS NOT NEW.amount_minor "
        "OR OLD.period_start IS NOT NEW.period_start OR OLD.period_end IS NOT NEW.period_end "
        "OR OLD.subscription_id IS NOT NEW.subscription_id OR OLD.invoice_id IS NOT NEW.invoice_id"
    )
    rows = _row_triggers(d)
    return [
        "CREATE TRIGGER report_mrr_invoice_update AFTER UPDATE OF status, issued_at, currency, "
        f"kind, tenant_id ON billing_invoice WHEN {_MOVES_INVOICE} BEGIN "
        f"{_upsert([_of_invoice('OLD', -1, d), _of_invoice('NEW', 1, d)])} END",
        "CREATE TRIGGER report_mrr_invoice_delete AFTER DELETE ON billing_invoice "
        f"WHEN OLD.status IN {BILLED} AND OLD.issued_at IS NOT NULL BEGIN "
        f"{_upsert([_of_invoice('OLD', -1, d)])} END",
        "CREATE TRIGGER report_mrr_line_insert AFTER INSERT ON billing_invoice_line "
        f"WHEN {counts('NEW')} BEGIN {_upsert([_of_line('NEW', 1, d)])} END",
        "CREATE TRIGGER report_mrr_line_delete AFTER DELETE ON billing_invoice_line "
        f"WHEN {counts('OLD')} BEGIN {_upsert([_of_line('OLD', -1, d)])} END",
        "CREATE TRIGGER report_mrr_line_update AFTER UPDATE ON billing_invoice_line "
        f"WHEN ({line_changes}) AND ({counts('OLD')} OR {counts('NEW')}) BEGIN "
        f"{_upsert([_of_line('OLD', -1, d), _of_line('NEW', 1, d)])} END",
        "CREATE TRIGGER report_mrr_subscription_update AFTER UPDATE OF id, started_at, "
        f"trial_ends_at, cancel_at ON billing_subscription WHEN {_MOVES_SUBSCRIPTION} BEGIN "
        f"{rows['report_mrr_subscription_update']} END",
        "CREATE TRIGGER report_mrr_subscription_delete AFTER DELETE ON billing_subscription "
        f"BEGIN {rows['report_mrr_subscription_delete']} END",
        "CREATE TRIGGER report_mrr_tenant_update AFTER UPDATE OF id, timezone ON tenant "
        "WHEN OLD.id IS NOT NEW.id OR OLD.timezone IS NOT NEW.timezone BEGIN "
        f"{rows['report_mrr_tenant_update']} END",
    ]


def _pg_functions() -> list[str]:
    d = "postgresql"
    moved = (
        "(SELECT o.* FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id WHERE "
        f"(o.status IN {BILLED} AND o.issued_at IS NOT NULL) IS DISTINCT FROM "
        f"(n.status IN {BILLED} AND n.issued_at IS NOT NULL) "
        "OR o.issued_at IS DISTINCT FROM n.issued_at OR o.currency <> n.currency "
        "OR o.kind <> n.kind OR o.tenant_id <> n.tenant_id)"
    )
    moved_new = moved.replace("SELECT o.*", "SELECT n.*")
    invoice_fn = (
        "CREATE OR REPLACE FUNCTION report_mrr_invoice_rollup() RETURNS trigger "
        "LANGUAGE plpgsql AS $fn$ BEGIN IF TG_OP = 'UPDATE' THEN "
        + _upsert(
            [
                _of_invoice("o", -1, d, f"{moved} AS o"),
                _of_invoice("n", 1, d, f"{moved_new} AS n"),
            ]
        )
        + " ELSE "
        + _upsert([_of_invoice("o", -1, d, "old_rows AS o")])
        + " END IF; RETURN NULL; END $fn$"
    )
    line_fn = (
        "CREATE OR REPLACE FUNCTION report_mrr_line_rollup() RETURNS trigger "
        "LANGUAGE plpgsql AS $fn$ BEGIN IF TG_OP = 'INSERT' THEN "
        + _upsert([_of_line("n", 1, d, "new_rows AS n")])
        + " ELSIF TG_OP = 'UPDATE' THEN "
        + _upsert([_of_line("o", -1, d, "old_rows AS o"), _of_line("n", 1, d, "new_rows AS n")])
        + " ELSE "
        + _upsert([_of_line("o", -1, d, "old_rows AS o")])
        + " END IF; RETURN NULL; END $fn$"
    )
    rows = _row_triggers(d)
    sub_fn = (
        "CREATE OR REPLACE FUNCTION report_mrr_subscription_rollup() RETURNS trigger "
        "LANGUAGE plpgsql AS $fn$ BEGIN IF TG_OP = 'UPDATE' THEN "
        f"IF {_MOVES_SUBSCRIPTION.replace('IS NOT', 'IS DISTINCT FROM')} THEN "
        f"{rows['report_mrr_subscription_update']} END IF; "
        f"ELSE {rows['report_mrr_subscription_delete']} END IF; RETURN NULL; END $fn$"
    )
    tenant_fn = (
        "CREATE OR REPLACE FUNCTION report_mrr_tenant_rollup() RETURNS trigger "
        "LANGUAGE plpgsql AS $fn$ BEGIN "
        "IF OLD.id IS DISTINCT FROM NEW.id OR OLD.timezone IS DISTINCT FROM NEW.timezone THEN "
        f"{rows['report_mrr_tenant_update']} END IF; RETURN NULL; END $fn$"
    )
    return [invoice_fn, line_fn, sub_fn, tenant_fn]


def _pg_triggers() -> list[str]:
    out = []
    for table, names in _PG_STATEMENT.items():
        fn = "report_mrr_invoice_rollup" if table == "billing_invoice" else "report_mrr_line_rollup"
        for name in names:
            op = name.rsplit("_", 1)[1].upper()
            refs = {
                "INSERT": "NEW TABLE AS new_rows",
                "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                "DELETE": "OLD TABLE AS old_rows",
            }[op]
            out.append(
                f"CREATE TRIGGER {name} AFTER {op} ON {table} REFERENCING {refs} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
            )
    out += [
        "CREATE TRIGGER report_mrr_subscription_update AFTER UPDATE OF id, started_at, "
        "trial_ends_at, cancel_at ON billing_subscription FOR EACH ROW "
        "EXECUTE FUNCTION report_mrr_subscription_rollup()",
        "CREATE TRIGGER report_mrr_subscription_delete AFTER DELETE ON billing_subscription "
        "FOR EACH ROW EXECUTE FUNCTION report_mrr_subscription_rollup()",
        "CREATE TRIGGER report_mrr_tenant_update AFTER UPDATE OF id, timezone ON tenant "
        "FOR EACH ROW EXECUTE FUNCTION report_mrr_tenant_rollup()",
    ]
    return out


def drop_sql(dialect: str) -> list[str]:
    """Statements that remove the triggers (and, on PostgreSQL, their functions)."""
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {name} ON {table}"
            for table, names in {**_PG_STATEMENT, **_PG_ROW}.items()
            for name in names
        ] + [f"DROP FUNCTION IF EXISTS {fn}()" for fn in _PG_FUNCTIONS]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in _SQLITE_TRIGGERS]


def trigger_sql(dialect: str) -> list[str]:
    """Statements that create the triggers keeping the rollup in step."""
    if dialect == "postgresql":
        return _pg_functions() + _pg_triggers()
    return _sqlite_triggers()


def recompute_sql(dialect: str) -> str:
    """The rollup's rows, computed from every billed line (what ``rebuild_sql`` writes)."""
    src = (
        "FROM billing_invoice_line AS l JOIN billing_invoice AS i ON i.id = l.invoice_id "
        f"JOIN tenant AS t ON t.id = i.tenant_id {_SUB}"
    )
    every = _rows(1, dialect, source=src)
    return f"SELECT {KEY}, sum(lines), sum(amount_minor) FROM ({every}) AS d GROUP BY {KEY}"


def rebuild_sql(dialect: str) -> list[str]:
    """Statements that recompute the rollup from the invoices and their lines."""
    return [f"DELETE FROM {TABLE}", f"INSERT INTO {TABLE} ({COLS}) {recompute_sql(dialect)}"]


def install(connection: Any) -> None:
    """(Re)create the triggers and rebuild the rollup, in the connection's transaction."""
    dialect = connection.dialect.name
    for stmt in drop_sql(dialect) + trigger_sql(dialect) + rebuild_sql(dialect):
        connection.exec_driver_sql(stmt)


def rebuild(session: Any) -> int:
    """Recompute the rollup from the invoices, in the session's transaction, with its
    audit row; returns its number of rows."""
    conn = session.connection()
    for stmt in rebuild_sql(conn.dialect.name):
        conn.exec_driver_sql(stmt)
    rows = int(conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar_one())
    audit.record(
        session,
        "report.rebuild",
        target_type="report",
        target_id="mrr",
        target="normalised MRR rollup",
        after={TABLE: rows},
    )
    return rows
