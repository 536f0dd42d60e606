"""Monthly revenue rollups, kept in step with the invoices by triggers in the store.

The revenue and invoice KPIs read two small tables instead of a year of invoices:

- ``report_invoice_month(month, currency, status, kind, paid_month) -> invoices,
  total_minor``: every issued, paid or void invoice, by the UTC month of ``issued_at``
  and, for a paid one, of ``paid_at`` (``''`` when there is none);
- ``report_revenue_month(month, currency, plan_code, app_code, line_kind) -> lines,
  amount_minor``: the lines of billed (issued or paid) invoices, signed (a credit note's
  lines subtract), by the invoice's month and currency and the line's subscription's plan
  and app (``-`` when there is none).

Triggers on ``billing_invoice`` and ``billing_invoice_line`` apply each write's difference
with an UPSERT increment (``INSERT … ON CONFLICT DO UPDATE SET x = x + excluded.x``) in
the writing statement's own transaction, so the rollups hold for every path that writes
invoices: issue, pay, void and its credit note, the run's bulk inserts, a bulk ``UPDATE``.
On PostgreSQL the triggers are per statement and read its transition tables: a statement
that writes many invoices adds one increment per key, not one per row, so writers touch
each rollup row once per statement. On SQLite (one writer at a time) they are per row.

A subscription keeps its plan and app (changing plan starts a new subscription), so a
line's plan and app are fixed once it is billed. ``rebuild()`` recomputes both tables
from the invoices with one ``INSERT … SELECT … GROUP BY`` each (``mno report rebuild``);
``install()`` (re)creates the triggers and rebuilds, and is what the migration runs.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mno.store import audit

INVOICE_TABLE = "report_invoice_month"
REVENUE_TABLE = "report_revenue_month"
ISSUED = "('issued', 'paid', 'void')"
BILLED = "('issued', 'paid')"
_SQLITE_TRIGGERS = (
    "report_invoice_insert",
    "report_invoice_delete",
    "report_invoice_update",
    "report_invoice_lines_update",
    "report_line_insert",
    "report_line_delete",
    "report_line_update",
)
_PG_TRIGGERS = {
    "billing_invoice": (
        "report_invoice_insert",
        "report_invoice_update",
        "report_invoice_delete",
    ),
    "billing_invoice_line": ("report_line_insert", "report_line_update", "report_line_delete"),
}
_PG_FUNCTIONS = ("report_invoice_rollup", "report_line_rollup")


def _month(col: str, dialect: str) -> str:
    """``YYYY-MM`` of a UTC timestamp column (SQLite keeps ``YYYY-MM-DD HH:MM:SS`` text)."""
    if dialect == "postgresql":
        return f"to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM')"
    return f"substr({col}, 1, 7)"


def _sign(kind: str) -> str:
    return f"(CASE WHEN {kind} = 'credit_note' THEN -1 ELSE 1 END)"


_INVOICE_COLS = "month, currency, status, kind, paid_month, invoices, total_minor"
_INVOICE_KEY = "month, currency, status, kind, paid_month"
_REVENUE_COLS = "month, currency, plan_code, app_code, line_kind, lines, amount_minor"
_REVENUE_KEY = "month, currency, plan_code, app_code, line_kind"


def _upsert_invoices(select: str) -> str:
    return (
        f"INSERT INTO {INVOICE_TABLE} ({_INVOICE_COLS}) {select} "
        f"ON CONFLICT ({_INVOICE_KEY}) DO UPDATE SET "
        f"invoices = {INVOICE_TABLE}.invoices + excluded.invoices, "
        f"total_minor = {INVOICE_TABLE}.total_minor + excluded.total_minor"
    )


def _upsert_revenue(select: str) -> str:
    return (
        f"INSERT INTO {REVENUE_TABLE} ({_REVENUE_COLS}) {select} "
        f"ON CONFLICT ({_REVENUE_KEY}) DO UPDATE SET "
        f"lines = {REVENUE_TABLE}.lines + excluded.lines, "
        f"amount_minor = {REVENUE_TABLE}.amount_minor + excluded.amount_minor"
    )


# -- the rows an invoice or a line adds (sign +1) or takes away (-1) ---------------------


def _issued_month(inv: str, dialect: str) -> str:
    """The invoice's month of issue, ``''`` for an invoice without an issue time."""
    return f"coalesce({_month(f'{inv}.issued_at', dialect)}, '')"


def _paid_month(inv: str, dialect: str) -> str:
    """The month a paid invoice was paid in, ``''`` for any other."""
    return (
        f"(CASE WHEN {inv}.status = 'paid' THEN coalesce({_month(f'{inv}.paid_at', dialect)}, '')"
        " ELSE '' END)"
    )


def _invoice_rows(inv: str, sign: int, dialect: str, source: str = "") -> str:
    """Rollup rows of invoice rows ``inv`` (a row alias, or a table read ``FROM source``)."""
    return (
        f"SELECT {_issued_month(inv, dialect)} AS month, {inv}.currency AS currency, "
        f"{inv}.status AS status, {inv}.kind AS kind, "
        f"{_paid_month(inv, dialect)} AS paid_month, {sign} AS invoices, "
        f"{sign} * {inv}.total_minor AS total_minor {source}"
        f"WHERE {inv}.status IN {ISSUED}"
    )


def _lines_of_invoices(inv: str, sign: int, dialect: str, source: str = "") -> str:
    """Revenue rows of the lines of invoice rows ``inv`` (the trigger's row, or the rows
    of ``source``)."""
    if source:
        lines = f"FROM {source} JOIN billing_invoice_line AS l ON l.invoice_id = {inv}.id "
        own = ""
    else:
        lines = "FROM billing_invoice_line AS l "
        own = f"l.invoice_id = {inv}.id AND "
    return (
        f"SELECT {_month(f'{inv}.issued_at', dialect)} AS month, {inv}.currency AS currency, "
        "coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') AS app_code, "
        f"l.kind AS line_kind, {sign} AS lines, "
        f"{sign} * l.amount_minor * {_sign(f'{inv}.kind')} AS amount_minor {lines}"
        "LEFT JOIN billing_subscription AS s ON s.id = l.subscription_id "
        f"WHERE {own}{inv}.status IN {BILLED} AND {inv}.issued_at IS NOT NULL"
    )


def _lines_rows(line: str, sign: int, dialect: str, source: str = "") -> str:
    """Revenue rows of line rows ``line`` (the trigger's row, or the rows of ``source``),
    through their invoices."""
    if source:
        invoice = f"FROM {source} JOIN billing_invoice AS i ON i.id = {line}.invoice_id "
        own = ""
    else:
        invoice = "FROM billing_invoice AS i "
        own = f"i.id = {line}.invoice_id AND "
    return (
        f"SELECT {_month('i.issued_at', dialect)} AS month, i.currency AS currency, "
        "coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') AS app_code, "
        f"{line}.kind AS line_kind, {sign} AS lines, "
        f"{sign} * {line}.amount_minor * {_sign('i.kind')} AS amount_minor {invoice}"
        f"LEFT JOIN billing_subscription AS s ON s.id = {line}.subscription_id "
        f"WHERE {own}i.status IN {BILLED} AND i.issued_at IS NOT NULL"
    )


def _grouped(parts: list[str], key: str, sums: tuple[str, str]) -> str:
    """The parts' rows summed per key; keys whose sums cancel out are left alone."""
    a, b = sums
    union = " UNION ALL ".join(parts)
    return (
        f"SELECT {key}, sum({a}), sum({b}) FROM ({union}) AS d GROUP BY {key} "
        f"HAVING sum({a}) <> 0 OR sum({b}) <> 0 ORDER BY {key}"
    )


# -- SQLite: row triggers ----------------------------------------------------------------


def _sqlite_triggers() -> list[str]:
    d = "sqlite"

    def one(inv: str, sign: int) -> str:
        return _upsert_invoices(_invoice_rows(inv, sign, d)) + ";"

    def lines_of(inv: str, sign: int) -> str:
        # the invoice is the trigger's row: its lines, one UPSERT per key
        return (
            _upsert_revenue(
                f"SELECT {_REVENUE_KEY}, sum(lines), sum(amount_minor) "
                f"FROM ({_lines_of_invoices(inv, sign, d)}) AS d GROUP BY {_REVENUE_KEY}"
            )
            + ";"
        )

    def line(ln: str, sign: int) -> str:
        return _upsert_revenue(_lines_rows(ln, sign, d)) + ";"

    def billed(ln: str) -> str:
        # a line counts only on a billed invoice: a draft's lines (a billing run writes
        # hundreds of thousands) skip the trigger's program after one primary-key probe
        return (
            f"EXISTS (SELECT 1 FROM billing_invoice AS b WHERE b.id = {ln}.invoice_id "
            f"AND b.status IN {BILLED} AND b.issued_at IS NOT NULL)"
        )

    relevant = (
        "OLD.status IS NOT NEW.status OR OLD.issued_at IS NOT NEW.issued_at "
        "OR OLD.currency IS NOT NEW.currency OR OLD.kind IS NOT NEW.kind "
        "OR OLD.total_minor IS NOT NEW.total_minor OR OLD.paid_at IS NOT NEW.paid_at"
    )
    moves_lines = (
        f"(OLD.status IN {BILLED} AND OLD.issued_at IS NOT NULL) IS NOT "
        f"(NEW.status IN {BILLED} AND NEW.issued_at IS NOT NULL) "
        "OR substr(OLD.issued_at, 1, 7) IS NOT substr(NEW.issued_at, 1, 7) "
        "OR OLD.currency IS NOT NEW.currency OR OLD.kind IS NOT NEW.kind"
    )
    cols = "status, issued_at, currency, kind"
    return [
        "CREATE TRIGGER report_invoice_insert AFTER INSERT ON billing_invoice "
        f"WHEN NEW.status IN {ISSUED} BEGIN {one('NEW', 1)} END",
        "CREATE TRIGGER report_invoice_delete AFTER DELETE ON billing_invoice "
        f"WHEN OLD.status IN {ISSUED} BEGIN {one('OLD', -1)} {lines_of('OLD', -1)} END",
        f"CREATE TRIGGER report_invoice_update AFTER UPDATE OF {cols}, total_minor, paid_at "
        f"ON billing_invoice WHEN {relevant} BEGIN {one('OLD', -1)} {one('NEW', 1)} END",
        f"CREATE TRIGGER report_invoice_lines_update AFTER UPDATE OF {cols} "
        f"ON billing_invoice WHEN {moves_lines} "
        f"BEGIN {lines_of('OLD', -1)} {lines_of('NEW', 1)} END",
        "CREATE TRIGGER report_line_insert AFTER INSERT ON billing_invoice_line "
        f"WHEN {billed('NEW')} BEGIN {line('NEW', 1)} END",
        "CREATE TRIGGER report_line_delete AFTER DELETE ON billing_invoice_line "
        f"WHEN {billed('OLD')} BEGIN {line('OLD', -1)} END",
        "CREATE TRIGGER report_line_update AFTER UPDATE OF invoice_id, subscription_id, kind, "
        f"amount_minor ON billing_invoice_line BEGIN {line('OLD', -1)} {line('NEW', 1)} END",
    ]


# -- PostgreSQL: statement triggers over transition tables ---------------------------------


def _pg_functions() -> list[str]:
    d = "postgresql"
    inv_key, rev_key = _INVOICE_KEY, _REVENUE_KEY

    def invoices(parts: list[str]) -> str:
        return _upsert_invoices(_grouped(parts, inv_key, ("invoices", "total_minor"))) + ";"

    def revenue(parts: list[str]) -> str:
        return _upsert_revenue(_grouped(parts, rev_key, ("lines", "amount_minor"))) + ";"

    new_inv = _invoice_rows("n", 1, d, "FROM new_rows AS n ")
    old_inv = _invoice_rows("o", -1, d, "FROM old_rows AS o ")
    # an update moves an invoice's lines only when it changes billed state, month, currency
    # or kind: the lines of those invoices, before and after
    moved = (
        "(SELECT o.* FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id WHERE "
        f"(o.status IN {BILLED} AND o.issued_at IS NOT NULL) IS DISTINCT FROM "
        f"(n.status IN {BILLED} AND n.issued_at IS NOT NULL) "
        f"OR {_month('o.issued_at', d)} IS DISTINCT FROM {_month('n.issued_at', d)} "
        "OR o.currency <> n.currency OR o.kind <> n.kind)"
    )
    moved_new = moved.replace("SELECT o.*", "SELECT n.*")
    old_lines = _lines_of_invoices("o", -1, d, f"{moved} AS o")
    new_lines = _lines_of_invoices("n", 1, d, f"{moved_new} AS n")
    gone_lines = _lines_of_invoices("o", -1, d, "old_rows AS o")
    invoice_fn = (
        "CREATE OR REPLACE FUNCTION report_invoice_rollup() RETURNS trigger "
        "LANGUAGE plpgsql AS $fn$ BEGIN "
        f"IF TG_OP = 'INSERT' THEN {invoices([new_inv])} "
        f"ELSIF TG_OP = 'UPDATE' THEN {invoices([old_inv, new_inv])} "
        f"{revenue([old_lines, new_lines])} "
        f"ELSE {invoices([old_inv])} {revenue([gone_lines])} "
        "END IF; RETURN NULL; END $fn$"
    )
    new_ln = _lines_rows("n", 1, d, "new_rows AS n")
    old_ln = _lines_rows("o", -1, d, "old_rows AS o")
    line_fn = (
        "CREATE OR REPLACE FUNCTION report_line_rollup() RETURNS trigger "
        "LANGUAGE plpgsql AS $fn$ BEGIN "
        f"IF TG_OP = 'INSERT' THEN {revenue([new_ln])} "
        f"ELSIF TG_OP = 'UPDATE' THEN {revenue([old_ln, new_ln])} "
        f"ELSE {revenue([old_ln])} "
        "END IF; RETURN NULL; END $fn$"
    )
    return [invoice_fn, line_fn]


def _pg_triggers() -> list[str]:
    out = []
    for table, names in _PG_TRIGGERS.items():
        fn = "report_invoice_rollup" if table == "billing_invoice" else "report_line_rollup"
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
    return out


def drop_sql(dialect: str) -> list[str]:
    """Statements that remove the triggers (and, on PostgreSQL, their functions)."""
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {name} ON {table}"
            for table, names in _PG_TRIGGERS.items()
            for name in names
        ] + [f"DROP FUNCTION IF EXISTS {fn}()" for fn in _PG_FUNCTIONS]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in _SQLITE_TRIGGERS]


def trigger_sql(dialect: str) -> list[str]:
    """Statements that create the triggers keeping the rollups in step."""
    if dialect == "postgresql":
        return _pg_functions() + _pg_triggers()
    return _sqlite_triggers()


def rebuild_sql(dialect: str) -> list[str]:
    """Statements that recompute both rollups from the invoices and their lines."""
    return [
        f"DELETE FROM {INVOICE_TABLE}",
        f"DELETE FROM {REVENUE_TABLE}",
        _plain_insert(
            INVOICE_TABLE,
            _INVOICE_COLS,
            f"SELECT {_issued_month('i', dialect)}, i.currency, i.status, i.kind, "
            f"{_paid_month('i', dialect)}, count(*), sum(i.total_minor) "
            f"FROM billing_invoice AS i WHERE i.status IN {ISSUED} "
            f"GROUP BY {_issued_month('i', dialect)}, i.currency, i.status, i.kind, "
            f"{_paid_month('i', dialect)}",
        ),
        _plain_insert(
            REVENUE_TABLE,
            _REVENUE_COLS,
            f"SELECT {_month('i.issued_at', dialect)}, i.currency, "
            "coalesce(s.plan_code, '-'), coalesce(s.app_code, '-'), l.kind, count(*), "
            f"sum(l.amount_minor * {_sign('i.kind')}) "
            "FROM billing_invoice_line AS l JOIN billing_invoice AS i ON i.id = l.invoice_id "
            "LEFT JOIN billing_subscription AS s ON s.id = l.subscription_id "
            f"WHERE i.status IN {BILLED} AND i.issued_at IS NOT NULL "
            f"GROUP BY {_month('i.issued_at', dialect)}, i.currency, "
            "coalesce(s.plan_code, '-'), coalesce(s.app_code, '-'), l.kind",
        ),
    ]


def _plain_insert(table: str, cols: str, select: str) -> str:
    return f"INSERT INTO {table} ({cols}) {select}"


def install(connection: Any) -> None:
    """(Re)create the triggers and rebuild the rollups, in the connection's transaction."""
    dialect = connection.dialect.name
    for stmt in drop_sql(dialect) + trigger_sql(dialect) + rebuild_sql(dialect):
        connection.exec_driver_sql(stmt)


def rebuild(session: Any) -> dict[str, int]:
    """Recompute both rollups from the invoices, in the session's transaction, with its
    audit row; returns the number of rollup rows of each table."""
    conn = session.connection()
    for stmt in rebuild_sql(conn.dialect.name):
        conn.exec_driver_sql(stmt)
    counts = {
        table: int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
        for table in (INVOICE_TABLE, REVENUE_TABLE)
    }
    audit.record(
        session,
        "report.rebuild",
        target_type="report",
        target_id="rollups",
        target="monthly rollups",
        after=counts,
    )
    return counts
