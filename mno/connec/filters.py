"""``$filter`` and ``$orderby``: a small OData-like language compiled to SQL over the
records' JSON, with the same results on SQLite and PostgreSQL (where ``eq`` on a text,
date or boolean field is a ``jsonb`` containment test the GIN index answers, ``to_sql``).

Grammar (keywords are case-insensitive)::

    expr    := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | "(" expr ")" | "contains" "(" field "," string ")"
             | field op literal
    op      := eq | ne | gt | ge | lt | le
    literal := 'text' ('' inside is a quote) | number | true | false | null
             | 2024-01-31 (a date) | 2024-01-31T10:00:00Z (a time)

The parser is written by hand, a recursive descent of some hundred lines: the language
is small, and the libraries that parse OData filters either build Django or
SQLAlchemy-ORM queries over declared columns (not over a JSON document whose fields come
from a schema) or pull in a parser generator for a dozen tokens. Each field compares by
its type in the entity's schema (``entities.Entity.field_type``): a decimal string as a
number, a date as ISO text (which sorts by date), a boolean as a boolean. Values always
travel as bound parameters; a field name reaches SQL only as a JSON path element that
SQLAlchemy binds too, and only after it is found among the schema's fields.

``ne`` also matches a record that lacks the field (as OData's ``null ne 'x'``), the
other comparisons never do; ``eq null`` matches a missing or null field. ``contains`` is
case-insensitive. A malformed filter is ``BadInput`` naming the position.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from mno.connec.entities import Entity
from mno.errors import BadInput

OPS = ("eq", "ne", "gt", "ge", "lt", "le")
MAX_LENGTH = 4000
MAX_DEPTH = 32

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<time>\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)
    | (?P<date>\d{4}-\d{2}-\d{2})
    | (?P<num>-?\d+(?:\.\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    value: str
    at: int


def tokenize(text: str) -> list[Token]:
    if len(text) > MAX_LENGTH:
        raise BadInput(f"$filter is over {MAX_LENGTH} characters")
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise BadInput(f"$filter: unexpected {text[pos:].strip()[:20]!r} at {pos}")
        kind = m.lastgroup or ""
        out.append(Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


# -- the tree ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Any  # str, Decimal, bool, None, date, datetime


@dataclass(frozen=True)
class Contains:
    field: str
    text: str


@dataclass(frozen=True)
class Not:
    node: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # and | or
    nodes: tuple[Node, ...]


Node = Compare | Contains | Not | BoolOp


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def word(self, *words: str) -> bool:
        t = self.peek()
        return t is not None and t.kind == "name" and t.value.lower() in words

    def take(self, kind: str, value: str | None = None) -> Token:
        t = self.peek()
        if t is None:
            raise BadInput(f"$filter ends early: expected {value or kind}")
        if t.kind != kind or (value is not None and t.value.lower() != value):
            raise BadInput(f"$filter: expected {value or kind} at {t.at}, found {t.value!r}")
        self.i += 1
        return t

    def parse(self) -> Node:
        if not self.tokens:
            raise BadInput("$filter is empty")
        node = self.expr()
        t = self.peek()
        if t is not None:
            raise BadInput(f"$filter: unexpected {t.value!r} at {t.at}")
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise BadInput(f"$filter nests deeper than {MAX_DEPTH}")
        nodes = [self.conj()]
        while self.word("or"):
            self.i += 1
            nodes.append(self.conj())
        self.depth -= 1
        return nodes[0] if len(nodes) == 1 else BoolOp("or", tuple(nodes))

    def conj(self) -> Node:
        nodes = [self.unary()]
        while self.word("and"):
            self.i += 1
            nodes.append(self.unary())
        return nodes[0] if len(nodes) == 1 else BoolOp("and", tuple(nodes))

    def unary(self) -> Node:
        t = self.peek()
        if t is None:
            raise BadInput("$filter ends early: expected a comparison")
        if self.word("not"):
            self.i += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise BadInput(f"$filter nests deeper than {MAX_DEPTH}")
            negated = Not(self.unary())
            self.depth -= 1
            return negated
        if t.kind == "punct" and t.value == "(":
            self.i += 1
            node = self.expr()
            self.take("punct", ")")
            return node
        if self.word("contains") and self._next_is("("):
            self.i += 2
            name = self.take("name").value
            self.take("punct", ",")
            lit = self.take("str")
            self.take("punct", ")")
            return Contains(name, _string(lit.value))
        name = self.take("name").value
        op = self.take("name")
        if op.value.lower() not in OPS:
            raise BadInput(
                f"$filter: unknown operator {op.value!r} at {op.at}", f"one of {', '.join(OPS)}"
            )
        return Compare(name, op.value.lower(), self.literal())

    def _next_is(self, punct: str) -> bool:
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        return nxt is not None and nxt.kind == "punct" and nxt.value == punct

    def literal(self) -> Any:
        t = self.peek()
        if t is None:
            raise BadInput("$filter ends early: expected a value")
        self.i += 1
        if t.kind == "str":
            return _string(t.value)
        if t.kind == "num":
            return Decimal(t.value)
        if t.kind == "date":
            try:
                return date.fromisoformat(t.value)
            except ValueError:
                raise BadInput(f"$filter: bad date {t.value!r} at {t.at}") from None
        if t.kind == "time":
            try:
                stamp = datetime.fromisoformat(t.value.replace("Z", "+00:00"))
            except ValueError:
                raise BadInput(f"$filter: bad time {t.value!r} at {t.at}") from None
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
        if t.kind == "name" and t.value.lower() in ("true", "false"):
            return t.value.lower() == "true"
        if t.kind == "name" and t.value.lower() == "null":
            return None
        raise BadInput(f"$filter: expected a value at {t.at}, found {t.value!r}")


def _string(quoted: str) -> str:
    return quoted[1:-1].replace("''", "'")


def parse(text: str) -> Node:
    """The tree of a ``$filter`` (``BadInput`` when malformed)."""
    return _Parser(text).parse()


# -- to SQL -----------------------------------------------------------------------------


def column(table: sa.Table, entity: Entity, name: str) -> tuple[Any, str]:
    """The SQL expression of a field and its type."""
    kind = entity.field_type(name)
    if name in ("id", "version", "created_at", "updated_at"):
        return table.c[name], kind
    item = table.c.data[name]
    if kind in ("decimal", "number"):
        return item.as_numeric(38, 10), kind
    if kind == "integer":
        return item.as_integer(), kind
    if kind == "boolean":
        return item.as_boolean(), kind
    if kind in ("string", "date"):
        return item.as_string(), kind
    raise BadInput(f"{entity.name}.{name} holds structured data: it cannot be filtered")


def _value(kind: str, name: str, value: Any) -> Any:
    """The bound value of a literal compared with a field of ``kind``."""
    if value is None:
        return None
    wrong = BadInput(f"$filter: {name} is {kind}; {value!r} does not compare with it")
    if kind in ("decimal", "number", "integer", "version"):
        if isinstance(value, bool):
            raise wrong
        try:
            number = Decimal(value) if isinstance(value, Decimal | str) else None
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            raise wrong
        return int(number) if kind == "integer" and number == int(number) else number
    if kind == "boolean":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind == "time":
        if isinstance(value, datetime):
            return value
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        raise wrong
    if kind == "date":
        if isinstance(value, date | str) and not isinstance(value, datetime):
            return value.isoformat() if isinstance(value, date) else value
        raise wrong
    if kind == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()
        raise wrong
    raise wrong


# the field types whose ``eq`` is exactly JSON containment: a record's value is the JSON
# string or boolean the literal becomes (numbers compare as numbers, "1.50" eq 1.5)
_CONTAINED = ("string", "date", "boolean")


def to_sql(node: Node, table: sa.Table, entity: Entity, *, postgres: bool = False) -> Any:
    """The WHERE clause of a tree, over ``table`` (``sync_record``).

    On PostgreSQL (``postgres``), ``eq`` on a text, date or boolean field is
    ``data @> '{"field": value}'``, which the GIN index ``ix_sync_record_data`` answers;
    the other comparisons read ``data->>'field'`` with the field type's cast."""
    if isinstance(node, BoolOp):
        parts = [to_sql(n, table, entity, postgres=postgres) for n in node.nodes]
        return sa.and_(*parts) if node.op == "and" else sa.or_(*parts)
    if isinstance(node, Not):
        inner = to_sql(node.node, table, entity, postgres=postgres)
        return sa.not_(sa.func.coalesce(inner, False))
    if isinstance(node, Contains):
        expr, kind = column(table, entity, node.field)
        if kind not in ("string", "date"):
            raise BadInput(f"$filter: contains needs a text field; {node.field} is {kind}")
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", node.text.lower()) + "%"
        return sa.func.lower(expr).like(sa.bindparam(None, pattern), escape="\\")
    expr, kind = column(table, entity, node.field)
    if node.field == "id":
        if node.value is None:
            return sa.false() if node.op == "eq" else sa.true()
        try:
            value: Any = uuid.UUID(str(node.value))
        except ValueError:
            return sa.false() if node.op != "ne" else sa.true()
        return _compare(expr, node.op, value)
    value = _value("version" if node.field == "version" else kind, node.field, node.value)
    if postgres and node.op == "eq" and value is not None and kind in _CONTAINED:
        if node.field not in ("id", "version", "created_at", "updated_at"):
            return _contains(table, node.field, value)
    if value is None:
        if node.op == "eq":
            return expr.is_(None)
        if node.op == "ne":
            return expr.is_not(None)
        raise BadInput(f"$filter: null compares with eq and ne only ({node.field} {node.op})")
    return _compare(expr, node.op, value)


def _contains(table: sa.Table, name: str, value: Any) -> Any:
    """PostgreSQL: ``data @> '{"name": value}'::jsonb`` (the document bound as JSON)."""
    doc = sa.cast(sa.bindparam(None, {name: value}, type_=JSONB()), JSONB())
    return table.c.data.op("@>", is_comparison=True)(doc)


def _compare(expr: Any, op: str, value: Any) -> Any:
    bound: Any = sa.bindparam(None, value)
    if op == "eq":
        return expr == bound
    if op == "ne":
        return sa.or_(expr != bound, expr.is_(None))
    if op == "gt":
        return expr > bound
    if op == "ge":
        return expr >= bound
    if op == "lt":
        return expr < bound
    return expr <= bound


def where(text: str | None, table: sa.Table, entity: Entity, *, postgres: bool = False) -> Any:
    """The WHERE clause of a ``$filter`` text (None: no filter); ``postgres``: for a
    PostgreSQL store (see ``to_sql``)."""
    if not text or not text.strip():
        return None
    return to_sql(parse(text), table, entity, postgres=postgres)


def order_by(text: str | None, entity: Entity) -> list[tuple[str, bool]]:
    """``$orderby`` as (field, descending) pairs: ``name, total_amount desc``."""
    if not text or not text.strip():
        return []
    out = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2:
            raise BadInput(f"$orderby: cannot read {part.strip()!r}", "field [asc|desc], ...")
        name = words[0]
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise BadInput(f"$orderby: {direction!r} is neither asc nor desc")
        entity.field_type(name)  # the field must exist
        out.append((name, direction == "desc"))
    if len(out) > 8:
        raise BadInput("$orderby takes at most 8 fields")
    return out
