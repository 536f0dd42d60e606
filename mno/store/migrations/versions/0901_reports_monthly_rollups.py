"""reports: monthly invoice and revenue rollups, kept in step by triggers, backfilled

Revision ID: 0901_reports
Revises: 0900_reports
Create Date: 2026-11-29 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0901_reports"
down_revision: str | Sequence[str] | None = "0900_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rollup triggers and the backfill as mno.reports.rollup wrote them when this
# revision was made, frozen here per dialect: later changes to the reports code must not
# change what this migration does.
DROP: dict[str, list[str]] = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS report_invoice_insert",
        "DROP TRIGGER IF EXISTS report_invoice_delete",
        "DROP TRIGGER IF EXISTS report_invoice_update",
        "DROP TRIGGER IF EXISTS report_invoice_lines_update",
        "DROP TRIGGER IF EXISTS report_line_insert",
        "DROP TRIGGER IF EXISTS report_line_delete",
        "DROP TRIGGER IF EXISTS report_line_update",
    ],
    "postgresql": [
        "DROP TRIGGER IF EXISTS report_invoice_insert ON billing_invoice",
        "DROP TRIGGER IF EXISTS report_invoice_update ON billing_invoice",
        "DROP TRIGGER IF EXISTS report_invoice_delete ON billing_invoice",
        "DROP TRIGGER IF EXISTS report_line_insert ON billing_invoice_line",
        "DROP TRIGGER IF EXISTS report_line_update ON billing_invoice_line",
        "DROP TRIGGER IF EXISTS report_line_delete ON billing_invoice_line",
        "DROP FUNCTION IF EXISTS report_invoice_rollup()",
        "DROP FUNCTION IF EXISTS report_line_rollup()",
    ],
}

TRIGGERS: dict[str, list[str]] = {
    "sqlite": [
        (
            "CREATE TRIGGER report_invoice_insert AFTER INSERT ON billing_invoice WHEN "
            "NEW.status IN ('issued', 'paid', 'void') BEGIN INSERT INTO report_invoice_month "
            "(month, currency, status, kind, paid_month, invoices, total_minor) SELECT "
            "coalesce(substr(NEW.issued_at, 1, 7), '') AS month, NEW.currency AS currency, "
            "NEW.status AS status, NEW.kind AS kind, (CASE WHEN NEW.status = 'paid' THEN "
            "coalesce(substr(NEW.paid_at, 1, 7), '') ELSE '' END) AS paid_month, 1 AS "
            "invoices, 1 * NEW.total_minor AS total_minor WHERE NEW.status IN ('issued', "
            "'paid', 'void') ON CONFLICT (month, currency, status, kind, paid_month) DO "
            "UPDATE SET invoices = report_invoice_month.invoices + excluded.invoices, "
            "total_minor = report_invoice_month.total_minor + excluded.total_minor; END"
        ),
        (
            "CREATE TRIGGER report_invoice_delete AFTER DELETE ON billing_invoice WHEN "
            "OLD.status IN ('issued', 'paid', 'void') BEGIN INSERT INTO report_invoice_month "
            "(month, currency, status, kind, paid_month, invoices, total_minor) SELECT "
            "coalesce(substr(OLD.issued_at, 1, 7), '') AS month, OLD.currency AS currency, "
            "OLD.status AS status, OLD.kind AS kind, (CASE WHEN OLD.status = 'paid' THEN "
            "coalesce(substr(OLD.paid_at, 1, 7), '') ELSE '' END) AS paid_month, -1 AS "
            "invoices, -1 * OLD.total_minor AS total_minor WHERE OLD.status IN ('issued', "
            "'paid', 'void') ON CONFLICT (month, currency, status, kind, paid_month) DO "
            "UPDATE SET invoices = report_invoice_month.invoices + excluded.invoices, "
            "total_minor = report_invoice_month.total_minor + excluded.total_minor; INSERT "
            "INTO report_revenue_month (month, currency, plan_code, app_code, line_kind, "
            "lines, amount_minor) SELECT month, currency, plan_code, app_code, line_kind, "
            "sum(lines), sum(amount_minor) FROM (SELECT substr(OLD.issued_at, 1, 7) AS month,"
            " OLD.currency AS currency, coalesce(s.plan_code, '-') AS plan_code, "
            "coalesce(s.app_code, '-') AS app_code, l.kind AS line_kind, -1 AS lines, -1 * "
            "l.amount_minor * (CASE WHEN OLD.kind = 'credit_note' THEN -1 ELSE 1 END) AS "
            "amount_minor FROM billing_invoice_line AS l LEFT JOIN billing_subscription AS s "
            "ON s.id = l.subscription_id WHERE l.invoice_id = OLD.id AND OLD.status IN "
            "('issued', 'paid') AND OLD.issued_at IS NOT NULL) AS d GROUP BY month, currency,"
            " plan_code, app_code, line_kind ON CONFLICT (month, currency, plan_code, "
            "app_code, line_kind) DO UPDATE SET lines = report_revenue_month.lines + "
            "excluded.lines, amount_minor = report_revenue_month.amount_minor + "
            "excluded.amount_minor; END"
        ),
        (
            "CREATE TRIGGER report_invoice_update AFTER UPDATE OF status, issued_at, "
            "currency, kind, total_minor, paid_at ON billing_invoice WHEN OLD.status IS NOT "
            "NEW.status OR OLD.issued_at IS NOT NEW.issued_at OR OLD.currency IS NOT "
            "NEW.currency OR OLD.kind IS NOT NEW.kind OR OLD.total_minor IS NOT "
            "NEW.total_minor OR OLD.paid_at IS NOT NEW.paid_at BEGIN INSERT INTO "
            "report_invoice_month (month, currency, status, kind, paid_month, invoices, "
            "total_minor) SELECT coalesce(substr(OLD.issued_at, 1, 7), '') AS month, "
            "OLD.currency AS currency, OLD.status AS status, OLD.kind AS kind, (CASE WHEN "
            "OLD.status = 'paid' THEN coalesce(substr(OLD.paid_at, 1, 7), '') ELSE '' END) AS"
            " paid_month, -1 AS invoices, -1 * OLD.total_minor AS total_minor WHERE "
            "OLD.status IN ('issued', 'paid', 'void') ON CONFLICT (month, currency, status, "
            "kind, paid_month) DO UPDATE SET invoices = report_invoice_month.invoices + "
            "excluded.invoices, total_minor = report_invoice_month.total_minor + "
            "excluded.total_minor; INSERT INTO report_invoice_month (month, currency, status,"
            " kind, paid_month, invoices, total_minor) SELECT coalesce(substr(NEW.issued_at, "
            "1, 7), '') AS month, NEW.currency AS currency, NEW.status AS status, NEW.kind AS"
            " kind, (CASE WHEN NEW.status = 'paid' THEN coalesce(substr(NEW.paid_at, 1, 7), "
            "'') ELSE '' END) AS paid_month, 1 AS invoices, 1 * NEW.total_minor AS "
            "total_minor WHERE NEW.status IN ('issued', 'paid', 'void') ON CONFLICT (month, "
            "currency, status, kind, paid_month) DO UPDATE SET invoices = "
            "report_invoice_month.invoices + excluded.invoices, total_minor = "
            "report_invoice_month.total_minor + excluded.total_minor; END"
        ),
        (
            "CREATE TRIGGER report_invoice_lines_update AFTER UPDATE OF status, issued_at, "
            "currency, kind ON billing_invoice WHEN (OLD.status IN ('issued', 'paid') AND "
            "OLD.issued_at IS NOT NULL) IS NOT (NEW.status IN ('issued', 'paid') AND "
            "NEW.issued_at IS NOT NULL) OR substr(OLD.issued_at, 1, 7) IS NOT "
            "substr(NEW.issued_at, 1, 7) OR OLD.currency IS NOT NEW.currency OR OLD.kind IS "
            "NOT NEW.kind BEGIN INSERT INTO report_revenue_month (month, currency, plan_code,"
            " app_code, line_kind, lines, amount_minor) SELECT month, currency, plan_code, "
            "app_code, line_kind, sum(lines), sum(amount_minor) FROM (SELECT "
            "substr(OLD.issued_at, 1, 7) AS month, OLD.currency AS currency, "
            "coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') AS app_code, "
            "l.kind AS line_kind, -1 AS lines, -1 * l.amount_minor * (CASE WHEN OLD.kind = "
            "'credit_note' THEN -1 ELSE 1 END) AS amount_minor FROM billing_invoice_line AS l"
            " LEFT JOIN billing_subscription AS s ON s.id = l.subscription_id WHERE "
            "l.invoice_id = OLD.id AND OLD.status IN ('issued', 'paid') AND OLD.issued_at IS "
            "NOT NULL) AS d GROUP BY month, currency, plan_code, app_code, line_kind ON "
            "CONFLICT (month, currency, plan_code, app_code, line_kind) DO UPDATE SET lines ="
            " report_revenue_month.lines + excluded.lines, amount_minor = "
            "report_revenue_month.amount_minor + excluded.amount_minor; INSERT INTO "
            "report_revenue_month (month, currency, plan_code, app_code, line_kind, lines, "
            "amount_minor) SELECT month, currency, plan_code, app_code, line_kind, "
            "sum(lines), sum(amount_minor) FROM (SELECT substr(NEW.issued_at, 1, 7) AS month,"
            " NEW.currency AS currency, coalesce(s.plan_code, '-') AS plan_code, "
            "coalesce(s.app_code, '-') AS app_code, l.kind AS line_kind, 1 AS lines, 1 * "
            "l.amount_minor * (CASE WHEN NEW.kind = 'credit_note' THEN -1 ELSE 1 END) AS "
            "amount_minor FROM billing_invoice_line AS l LEFT JOIN billing_subscription AS s "
            "ON s.id = l.subscription_id WHERE l.invoice_id = NEW.id AND NEW.status IN "
            "('issued', 'paid') AND NEW.issued_at IS NOT NULL) AS d GROUP BY month, currency,"
            " plan_code, app_code, line_kind ON CONFLICT (month, currency, plan_code, "
            "app_code, line_kind) DO UPDATE SET lines = report_revenue_month.lines + "
            "excluded.lines, amount_minor = report_revenue_month.amount_minor + "
            "excluded.amount_minor; END"
        ),
        (
            "CREATE TRIGGER report_line_insert AFTER INSERT ON billing_invoice_line WHEN "
            "EXISTS (SELECT 1 FROM billing_invoice AS b WHERE b.id = NEW.invoice_id AND "
            "b.status IN ('issued', 'paid') AND b.issued_at IS NOT NULL) BEGIN INSERT INTO "
            "report_revenue_month (month, currency, plan_code, app_code, line_kind, lines, "
            "amount_minor) SELECT substr(i.issued_at, 1, 7) AS month, i.currency AS currency,"
            " coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') AS app_code,"
            " NEW.kind AS line_kind, 1 AS lines, 1 * NEW.amount_minor * (CASE WHEN i.kind = "
            "'credit_note' THEN -1 ELSE 1 END) AS amount_minor FROM billing_invoice AS i LEFT"
            " JOIN billing_subscription AS s ON s.id = NEW.subscription_id WHERE i.id = "
            "NEW.invoice_id AND i.status IN ('issued', 'paid') AND i.issued_at IS NOT NULL ON"
            " CONFLICT (month, currency, plan_code, app_code, line_kind) DO UPDATE SET lines "
            "= report_revenue_month.lines + excluded.lines, amount_minor = "
            "report_revenue_month.amount_minor + excluded.amount_minor; END"
        ),
        (
            "CREATE TRIGGER report_line_delete AFTER DELETE ON billing_invoice_line WHEN "
            "EXISTS (SELECT 1 FROM billing_invoice AS b WHERE b.id = OLD.invoice_id AND "
            "b.status IN ('issued', 'paid') AND b.issued_at IS NOT NULL) BEGIN INSERT INTO "
            "report_revenue_month (month, currency, plan_code, app_code, line_kind, lines, "
            "amount_minor) SELECT substr(i.issued_at, 1, 7) AS month, i.currency AS currency,"
            " coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') AS app_code,"
            " OLD.kind AS line_kind, -1 AS lines, -1 * OLD.amount_minor * (CASE WHEN i.kind ="
            " 'credit_note' THEN -1 ELSE 1 END) AS amount_minor FROM billing_invoice AS i "
            "LEFT JOIN billing_subscription AS s ON s.id = OLD.subscription_id WHERE i.id = "
            "OLD.invoice_id AND i.status IN ('issued', 'paid') AND i.issued_at IS NOT NULL ON"
            " CONFLICT (month, currency, plan_code, app_code, line_kind) DO UPDATE SET lines "
            "= report_revenue_month.lines + excluded.lines, amount_minor = "
            "report_revenue_month.amount_minor + excluded.amount_minor; END"
        ),
        (
            "CREATE TRIGGER report_line_update AFTER UPDATE OF invoice_id, subscription_id, "
            "kind, amount_minor ON billing_invoice_line BEGIN INSERT INTO "
            "report_revenue_month (month, currency, plan_code, app_code, line_kind, lines, "
            "amount_minor) SELECT substr(i.issued_at, 1, 7) AS month, i.currency AS currency,"
            " coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') AS app_code,"
            " OLD.kind AS line_kind, -1 AS lines, -1 * OLD.amount_minor * (CASE WHEN i.kind ="
            " 'credit_note' THEN -1 ELSE 1 END) AS amount_minor FROM billing_invoice AS i "
            "LEFT JOIN billing_subscription AS s ON s.id = OLD.subscription_id WHERE i.id = "
            "OLD.invoice_id AND i.status IN ('issued', 'paid') AND i.issued_at IS NOT NULL ON"
            " CONFLICT (month, currency, plan_code, app_code, line_kind) DO UPDATE SET lines "
            "= report_revenue_month.lines + excluded.lines, amount_minor = "
            "report_revenue_month.amount_minor + excluded.amount_minor; INSERT INTO "
            "report_revenue_month (month, currency, plan_code, app_code, line_kind, lines, "
            "amount_minor) SELECT substr(i.issued_at, 1, 7) AS month, i.currency AS currency,"
            " coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') AS app_code,"
            " NEW.kind AS line_kind, 1 AS lines, 1 * NEW.amount_minor * (CASE WHEN i.kind = "
            "'credit_note' THEN -1 ELSE 1 END) AS amount_minor FROM billing_invoice AS i LEFT"
            " JOIN billing_subscription AS s ON s.id = NEW.subscription_id WHERE i.id = "
            "NEW.invoice_id AND i.status IN ('issued', 'paid') AND i.issued_at IS NOT NULL ON"
            " CONFLICT (month, currency, plan_code, app_code, line_kind) DO UPDATE SET lines "
            "= report_revenue_month.lines + excluded.lines, amount_minor = "
            "report_revenue_month.amount_minor + excluded.amount_minor; END"
        ),
    ],
    "postgresql": [
        (
            "CREATE OR REPLACE FUNCTION report_invoice_rollup() RETURNS trigger LANGUAGE "
            "plpgsql AS $fn$ BEGIN IF TG_OP = 'INSERT' THEN INSERT INTO report_invoice_month "
            "(month, currency, status, kind, paid_month, invoices, total_minor) SELECT month,"
            " currency, status, kind, paid_month, sum(invoices), sum(total_minor) FROM "
            "(SELECT coalesce(to_char(n.issued_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') AS "
            "month, n.currency AS currency, n.status AS status, n.kind AS kind, (CASE WHEN "
            "n.status = 'paid' THEN coalesce(to_char(n.paid_at AT TIME ZONE 'UTC', 'YYYY-"
            "MM'), '') ELSE '' END) AS paid_month, 1 AS invoices, 1 * n.total_minor AS "
            "total_minor FROM new_rows AS n WHERE n.status IN ('issued', 'paid', 'void')) AS "
            "d GROUP BY month, currency, status, kind, paid_month HAVING sum(invoices) <> 0 "
            "OR sum(total_minor) <> 0 ORDER BY month, currency, status, kind, paid_month ON "
            "CONFLICT (month, currency, status, kind, paid_month) DO UPDATE SET invoices = "
            "report_invoice_month.invoices + excluded.invoices, total_minor = "
            "report_invoice_month.total_minor + excluded.total_minor; ELSIF TG_OP = 'UPDATE' "
            "THEN INSERT INTO report_invoice_month (month, currency, status, kind, "
            "paid_month, invoices, total_minor) SELECT month, currency, status, kind, "
            "paid_month, sum(invoices), sum(total_minor) FROM (SELECT "
            "coalesce(to_char(o.issued_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') AS month, "
            "o.currency AS currency, o.status AS status, o.kind AS kind, (CASE WHEN o.status "
            "= 'paid' THEN coalesce(to_char(o.paid_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') "
            "ELSE '' END) AS paid_month, -1 AS invoices, -1 * o.total_minor AS total_minor "
            "FROM old_rows AS o WHERE o.status IN ('issued', 'paid', 'void') UNION ALL SELECT"
            " coalesce(to_char(n.issued_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') AS month, "
            "n.currency AS currency, n.status AS status, n.kind AS kind, (CASE WHEN n.status "
            "= 'paid' THEN coalesce(to_char(n.paid_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') "
            "ELSE '' END) AS paid_month, 1 AS invoices, 1 * n.total_minor AS total_minor FROM"
            " new_rows AS n WHERE n.status IN ('issued', 'paid', 'void')) AS d GROUP BY "
            "month, currency, status, kind, paid_month HAVING sum(invoices) <> 0 OR "
            "sum(total_minor) <> 0 ORDER BY month, currency, status, kind, paid_month ON "
            "CONFLICT (month, currency, status, kind, paid_month) DO UPDATE SET invoices = "
            "report_invoice_month.invoices + excluded.invoices, total_minor = "
            "report_invoice_month.total_minor + excluded.total_minor; INSERT INTO "
            "report_revenue_month (month, currency, plan_code, app_code, line_kind, lines, "
            "amount_minor) SELECT month, currency, plan_code, app_code, line_kind, "
            "sum(lines), sum(amount_minor) FROM (SELECT to_char(o.issued_at AT TIME ZONE "
            "'UTC', 'YYYY-MM') AS month, o.currency AS currency, coalesce(s.plan_code, '-') "
            "AS plan_code, coalesce(s.app_code, '-') AS app_code, l.kind AS line_kind, -1 AS "
            "lines, -1 * l.amount_minor * (CASE WHEN o.kind = 'credit_note' THEN -1 ELSE 1 "
            "END) AS amount_minor FROM (SELECT o.* FROM old_rows AS o JOIN new_rows AS n ON "
            "n.id = o.id WHERE (o.status IN ('issued', 'paid') AND o.issued_at IS NOT NULL) "
            "IS DISTINCT FROM (n.status IN ('issued', 'paid') AND n.issued_at IS NOT NULL) OR"
            " to_char(o.issued_at AT TIME ZONE 'UTC', 'YYYY-MM') IS DISTINCT FROM "
            "to_char(n.issued_at AT TIME ZONE 'UTC', 'YYYY-MM') OR o.currency <> n.currency "
            "OR o.kind <> n.kind) AS o JOIN billing_invoice_line AS l ON l.invoice_id = o.id "
            "LEFT JOIN billing_subscription AS s ON s.id = l.subscription_id WHERE o.status "
            "IN ('issued', 'paid') AND o.issued_at IS NOT NULL UNION ALL SELECT "
            "to_char(n.issued_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, n.currency AS "
            "currency, coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') AS "
            "app_code, l.kind AS line_kind, 1 AS lines, 1 * l.amount_minor * (CASE WHEN "
            "n.kind = 'credit_note' THEN -1 ELSE 1 END) AS amount_minor FROM (SELECT n.* FROM"
            " old_rows AS o JOIN new_rows AS n ON n.id = o.id WHERE (o.status IN ('issued', "
            "'paid') AND o.issued_at IS NOT NULL) IS DISTINCT FROM (n.status IN ('issued', "
            "'paid') AND n.issued_at IS NOT NULL) OR to_char(o.issued_at AT TIME ZONE 'UTC', "
            "'YYYY-MM') IS DISTINCT FROM to_char(n.issued_at AT TIME ZONE 'UTC', 'YYYY-MM') "
            "OR o.currency <> n.currency OR o.kind <> n.kind) AS n JOIN billing_invoice_line "
            "AS l ON l.invoice_id = n.id LEFT JOIN billing_subscription AS s ON s.id = "
            "l.subscription_id WHERE n.status IN ('issued', 'paid') AND n.issued_at IS NOT "
            "NULL) AS d GROUP BY month, currency, plan_code, app_code, line_kind HAVING "
            "sum(lines) <> 0 OR sum(amount_minor) <> 0 ORDER BY month, currency, plan_code, "
            "app_code, line_kind ON CONFLICT (month, currency, plan_code, app_code, "
            "line_kind) DO UPDATE SET lines = report_revenue_month.lines + excluded.lines, "
            "amount_minor = report_revenue_month.amount_minor + excluded.amount_minor; ELSE "
            "INSERT INTO report_invoice_month (month, currency, status, kind, paid_month, "
            "invoices, total_minor) SELECT month, currency, status, kind, paid_month, "
            "sum(invoices), sum(total_minor) FROM (SELECT coalesce(to_char(o.issued_at AT "
            "TIME ZONE 'UTC', 'YYYY-MM'), '') AS month, o.currency AS currency, o.status AS "
            "status, o.kind AS kind, (CASE WHEN o.status = 'paid' THEN "
            "coalesce(to_char(o.paid_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') ELSE '' END) AS "
            "paid_month, -1 AS invoices, -1 * o.total_minor AS total_minor FROM old_rows AS o"
            " WHERE o.status IN ('issued', 'paid', 'void')) AS d GROUP BY month, currency, "
            "status, kind, paid_month HAVING sum(invoices) <> 0 OR sum(total_minor) <> 0 "
            "ORDER BY month, currency, status, kind, paid_month ON CONFLICT (month, currency,"
            " status, kind, paid_month) DO UPDATE SET invoices = "
            "report_invoice_month.invoices + excluded.invoices, total_minor = "
            "report_invoice_month.total_minor + excluded.total_minor; INSERT INTO "
            "report_revenue_month (month, currency, plan_code, app_code, line_kind, lines, "
            "amount_minor) SELECT month, currency, plan_code, app_code, line_kind, "
            "sum(lines), sum(amount_minor) FROM (SELECT to_char(o.issued_at AT TIME ZONE "
            "'UTC', 'YYYY-MM') AS month, o.currency AS currency, coalesce(s.plan_code, '-') "
            "AS plan_code, coalesce(s.app_code, '-') AS app_code, l.kind AS line_kind, -1 AS "
            "lines, -1 * l.amount_minor * (CASE WHEN o.kind = 'credit_note' THEN -1 ELSE 1 "
            "END) AS amount_minor FROM old_rows AS o JOIN billing_invoice_line AS l ON "
            "l.invoice_id = o.id LEFT JOIN billing_subscription AS s ON s.id = "
            "l.subscription_id WHERE o.status IN ('issued', 'paid') AND o.issued_at IS NOT "
            "NULL) AS d GROUP BY month, currency, plan_code, app_code, line_kind HAVING "
            "sum(lines) <> 0 OR sum(amount_minor) <> 0 ORDER BY month, currency, plan_code, "
            "app_code, line_kind ON CONFLICT (month, currency, plan_code, app_code, "
            "line_kind) DO UPDATE SET lines = report_revenue_month.lines + excluded.lines, "
            "amount_minor = report_revenue_month.amount_minor + excluded.amount_minor; END "
            "IF; RETURN NULL; END $fn$"
        ),
        (
            "CREATE OR REPLACE FUNCTION report_line_rollup() RETURNS trigger LANGUAGE plpgsql"
            " AS $fn$ BEGIN IF TG_OP = 'INSERT' THEN INSERT INTO report_revenue_month (month,"
            " currency, plan_code, app_code, line_kind, lines, amount_minor) SELECT month, "
            "currency, plan_code, app_code, line_kind, sum(lines), sum(amount_minor) FROM "
            "(SELECT to_char(i.issued_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, i.currency "
            "AS currency, coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') "
            "AS app_code, n.kind AS line_kind, 1 AS lines, 1 * n.amount_minor * (CASE WHEN "
            "i.kind = 'credit_note' THEN -1 ELSE 1 END) AS amount_minor FROM new_rows AS n "
            "JOIN billing_invoice AS i ON i.id = n.invoice_id LEFT JOIN billing_subscription "
            "AS s ON s.id = n.subscription_id WHERE i.status IN ('issued', 'paid') AND "
            "i.issued_at IS NOT NULL) AS d GROUP BY month, currency, plan_code, app_code, "
            "line_kind HAVING sum(lines) <> 0 OR sum(amount_minor) <> 0 ORDER BY month, "
            "currency, plan_code, app_code, line_kind ON CONFLICT (month, currency, "
            "plan_code, app_code, line_kind) DO UPDATE SET lines = report_revenue_month.lines"
            " + excluded.lines, amount_minor = report_revenue_month.amount_minor + "
            "excluded.amount_minor; ELSIF TG_OP = 'UPDATE' THEN INSERT INTO "
            "report_revenue_month (month, currency, plan_code, app_code, line_kind, lines, "
            "amount_minor) SELECT month, currency, plan_code, app_code, line_kind, "
            "sum(lines), sum(amount_minor) FROM (SELECT to_char(i.issued_at AT TIME ZONE "
            "'UTC', 'YYYY-MM') AS month, i.currency AS currency, coalesce(s.plan_code, '-') "
            "AS plan_code, coalesce(s.app_code, '-') AS app_code, o.kind AS line_kind, -1 AS "
            "lines, -1 * o.amount_minor * (CASE WHEN i.kind = 'credit_note' THEN -1 ELSE 1 "
            "END) AS amount_minor FROM old_rows AS o JOIN billing_invoice AS i ON i.id = "
            "o.invoice_id LEFT JOIN billing_subscription AS s ON s.id = o.subscription_id "
            "WHERE i.status IN ('issued', 'paid') AND i.issued_at IS NOT NULL UNION ALL "
            "SELECT to_char(i.issued_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, i.currency "
            "AS currency, coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') "
            "AS app_code, n.kind AS line_kind, 1 AS lines, 1 * n.amount_minor * (CASE WHEN "
            "i.kind = 'credit_note' THEN -1 ELSE 1 END) AS amount_minor FROM new_rows AS n "
            "JOIN billing_invoice AS i ON i.id = n.invoice_id LEFT JOIN billing_subscription "
            "AS s ON s.id = n.subscription_id WHERE i.status IN ('issued', 'paid') AND "
            "i.issued_at IS NOT NULL) AS d GROUP BY month, currency, plan_code, app_code, "
            "line_kind HAVING sum(lines) <> 0 OR sum(amount_minor) <> 0 ORDER BY month, "
            "currency, plan_code, app_code, line_kind ON CONFLICT (month, currency, "
            "plan_code, app_code, line_kind) DO UPDATE SET lines = report_revenue_month.lines"
            " + excluded.lines, amount_minor = report_revenue_month.amount_minor + "
            "excluded.amount_minor; ELSE INSERT INTO report_revenue_month (month, currency, "
            "plan_code, app_code, line_kind, lines, amount_minor) SELECT month, currency, "
            "plan_code, app_code, line_kind, sum(lines), sum(amount_minor) FROM (SELECT "
            "to_char(i.issued_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month, i.currency AS "
            "currency, coalesce(s.plan_code, '-') AS plan_code, coalesce(s.app_code, '-') AS "
            "app_code, o.kind AS line_kind, -1 AS lines, -1 * o.amount_minor * (CASE WHEN "
            "i.kind = 'credit_note' THEN -1 ELSE 1 END) AS amount_minor FROM old_rows AS o "
            "JOIN billing_invoice AS i ON i.id = o.invoice_id LEFT JOIN billing_subscription "
            "AS s ON s.id = o.subscription_id WHERE i.status IN ('issued', 'paid') AND "
            "i.issued_at IS NOT NULL) AS d GROUP BY month, currency, plan_code, app_code, "
            "line_kind HAVING sum(lines) <> 0 OR sum(amount_minor) <> 0 ORDER BY month, "
            "currency, plan_code, app_code, line_kind ON CONFLICT (month, currency, "
            "plan_code, app_code, line_kind) DO UPDATE SET lines = report_revenue_month.lines"
            " + excluded.lines, amount_minor = report_revenue_month.amount_minor + "
            "excluded.amount_minor; END IF; RETURN NULL; END $fn$"
        ),
        (
            "CREATE TRIGGER report_invoice_insert AFTER INSERT ON billing_invoice REFERENCING"
            " NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "
            "report_invoice_rollup()"
        ),
        (
            "CREATE TRIGGER report_invoice_update AFTER UPDATE ON billing_invoice REFERENCING"
            " OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION"
            " report_invoice_rollup()"
        ),
        (
            "CREATE TRIGGER report_invoice_delete AFTER DELETE ON billing_invoice REFERENCING"
            " OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "
            "report_invoice_rollup()"
        ),
        (
            "CREATE TRIGGER report_line_insert AFTER INSERT ON billing_invoice_line "
            "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "
            "report_line_rollup()"
        ),
        (
            "CREATE TRIGGER report_line_update AFTER UPDATE ON billing_invoice_line "
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
            "EXECUTE FUNCTION report_line_rollup()"
        ),
        (
            "CREATE TRIGGER report_line_delete AFTER DELETE ON billing_invoice_line "
            "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "
            "report_line_rollup()"
        ),
    ],
}

REBUILD: dict[str, list[str]] = {
    "sqlite": [
        "DELETE FROM report_invoice_month",
        "DELETE FROM report_revenue_month",
        (
            "INSERT INTO report_invoice_month (month, currency, status, kind, paid_month, "
            "invoices, total_minor) SELECT coalesce(substr(i.issued_at, 1, 7), ''), "
            "i.currency, i.status, i.kind, (CASE WHEN i.status = 'paid' THEN "
            "coalesce(substr(i.paid_at, 1, 7), '') ELSE '' END), count(*), sum(i.total_minor)"
            " FROM billing_invoice AS i WHERE i.status IN ('issued', 'paid', 'void') GROUP BY"
            " coalesce(substr(i.issued_at, 1, 7), ''), i.currency, i.status, i.kind, (CASE "
            "WHEN i.status = 'paid' THEN coalesce(substr(i.paid_at, 1, 7), '') ELSE '' END)"
        ),
        (
            "INSERT INTO report_revenue_month (month, currency, plan_code, app_code, "
            "line_kind, lines, amount_minor) SELECT substr(i.issued_at, 1, 7), i.currency, "
            "coalesce(s.plan_code, '-'), coalesce(s.app_code, '-'), l.kind, count(*), "
            "sum(l.amount_minor * (CASE WHEN i.kind = 'credit_note' THEN -1 ELSE 1 END)) FROM"
            " billing_invoice_line AS l JOIN billing_invoice AS i ON i.id = l.invoice_id LEFT"
            " JOIN billing_subscription AS s ON s.id = l.subscription_id WHERE i.status IN "
            "('issued', 'paid') AND i.issued_at IS NOT NULL GROUP BY substr(i.issued_at, 1, "
            "7), i.currency, coalesce(s.plan_code, '-'), coalesce(s.app_code, '-'), l.kind"
        ),
    ],
    "postgresql": [
        "DELETE FROM report_invoice_month",
        "DELETE FROM report_revenue_month",
        (
            "INSERT INTO report_invoice_month (month, currency, status, kind, paid_month, "
            "invoices, total_minor) SELECT coalesce(to_char(i.issued_at AT TIME ZONE 'UTC', "
            "'YYYY-MM'), ''), i.currency, i.status, i.kind, (CASE WHEN i.status = 'paid' THEN"
            " coalesce(to_char(i.paid_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') ELSE '' END), "
            "count(*), sum(i.total_minor) FROM billing_invoice AS i WHERE i.status IN "
            "('issued', 'paid', 'void') GROUP BY coalesce(to_char(i.issued_at AT TIME ZONE "
            "'UTC', 'YYYY-MM'), ''), i.currency, i.status, i.kind, (CASE WHEN i.status = "
            "'paid' THEN coalesce(to_char(i.paid_at AT TIME ZONE 'UTC', 'YYYY-MM'), '') ELSE "
            "'' END)"
        ),
        (
            "INSERT INTO report_revenue_month (month, currency, plan_code, app_code, "
            "line_kind, lines, amount_minor) SELECT to_char(i.issued_at AT TIME ZONE 'UTC', "
            "'YYYY-MM'), i.currency, coalesce(s.plan_code, '-'), coalesce(s.app_code, '-'), "
            "l.kind, count(*), sum(l.amount_minor * (CASE WHEN i.kind = 'credit_note' THEN -1"
            " ELSE 1 END)) FROM billing_invoice_line AS l JOIN billing_invoice AS i ON i.id ="
            " l.invoice_id LEFT JOIN billing_subscription AS s ON s.id = l.subscription_id "
            "WHERE i.status IN ('issued', 'paid') AND i.issued_at IS NOT NULL GROUP BY "
            "to_char(i.issued_at AT TIME ZONE 'UTC', 'YYYY-MM'), i.currency, "
            "coalesce(s.plan_code, '-'), coalesce(s.app_code, '-'), l.kind"
        ),
    ],
}


def _key(name: str, length: int) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=False)


def upgrade() -> None:
    op.create_table(
        "report_invoice_month",
        _key("month", 7),
        _key("currency", 3),
        _key("status", 16),
        _key("kind", 16),
        _key("paid_month", 7),
        sa.Column("invoices", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("month", "currency", "status", "kind", "paid_month"),
    )
    op.create_table(
        "report_revenue_month",
        _key("month", 7),
        _key("currency", 3),
        _key("plan_code", 64),
        _key("app_code", 64),
        _key("line_kind", 16),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("month", "currency", "plan_code", "app_code", "line_kind"),
    )
    # the triggers, then one INSERT … SELECT … GROUP BY per table over the invoices
    bind = op.get_bind()
    dialect = _dialect(bind)
    for stmt in DROP[dialect] + TRIGGERS[dialect] + REBUILD[dialect]:
        bind.exec_driver_sql(stmt)


def _dialect(bind: sa.engine.Connection) -> str:
    return "postgresql" if bind.dialect.name == "postgresql" else "sqlite"


def downgrade() -> None:
    bind = op.get_bind()
    for stmt in DROP[_dialect(bind)]:
        bind.exec_driver_sql(stmt)
    op.drop_table("report_revenue_month")
    op.drop_table("report_invoice_month")
