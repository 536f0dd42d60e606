"""Hostile input for the argument parsers and the import formats.

Hypothesis feeds each parser values a careless or malicious caller could pass: huge,
negative, non-finite and exotic numbers, NUL bytes and control characters, long strings,
odd unicode, bad durations, dates and periods, broken CSV/JSONL/YAML files. Whatever it
sends, ``mno`` must answer with an exit code (2 for bad input; 0 or 1 where the value is
valid or refused by the store's state), one line on stderr, never a traceback or an
exception class name, and nothing written when it exits 2.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import Cli, counts

# FUZZ_EXAMPLES=500 FUZZ_RANDOM=1 searches longer, with fresh examples on each run.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the values are short already
)

# exception class names that must never reach the operator
LEAKS = re.compile(
    r"Traceback|\b(?:ValueError|TypeError|KeyError|IndexError|AttributeError|OverflowError|"
    r"UnicodeDecodeError|UnicodeEncodeError|IntegrityError|OperationalError|DataError|"
    r"InvalidOperation|RecursionError|JSONDecodeError|ProgrammingError|AssertionError|"
    r"ZeroDivisionError|StatementError|DecimalException)\b"
)

HOSTILE_NUMBERS = [
    "",
    " ",
    "-",
    "+",
    ".",
    "NaN",
    "nan",
    "-inf",
    "Infinity",
    "sNaN",
    "1e400",
    "1E-400",
    "-1e400",
    "1e5",
    "1_000",
    "１２３",  # full-width digits
    "٣",  # Arabic-Indic digit
    "0x10",
    "1,5",
    "10.000.000",
    "99999999999999999999999999999999",
    "-99999999999999999999999999999999",
    "0.0000000000000000000000000000001",
    "-0",
    "-1",
    "0",
    "1\x00",
    "\x001",
    "12.50 ",
    "1/2",
    "²",
    "−5",  # U+2212 minus
    "9" * 5000,
]
HOSTILE_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\x1b[31mred\x1b[0m",
    "\r\n",
    "\t",
    "\u202eevil",
    "\ud800",  # a lone surrogate
    "\ufeff",
    "x" * 10_000,
    "é" * 300,
    "../../etc/passwd",
    "'; DROP TABLE tenant; --",
    "%s%n%x",
    "{{ 7*7 }}",
    "🙂" * 50,
]
HOSTILE_DURATIONS = [
    "",
    "0",
    "0s",
    "-5m",
    "5",
    "5x",
    "1e400s",
    "99999999999999999999d",
    "９s",
    "1_0s",
    "NaNs",
    "infs",
    "1.5h",
    "1h30m",
    "24h\x00",
    "P1D",
    "999999999w",
]
HOSTILE_TIMES = [
    "",
    "0",
    "-1",
    "2026-13-01",
    "2026-02-30T00:00:00Z",
    "0000-01-01",
    "9999-12-31T23:59:59Z",
    "10000-01-01",
    "2026-01-01T25:00:00Z",
    "2026-01-01T00:00:00+25:00",
    "2026-01-01T00:00:00\x00",
    "１２３",
    "yesterday",
    "1e400",
    "99999999999999999999d",
    "999999999d",
    "-24h",
]
HOSTILE_PERIODS = [
    "",
    "2026",
    "2026-1",
    "2026-00",
    "2026-13",
    "26-10",
    "2026-10-01",
    "0000-01",
    "9999-12",
    "10000-01",
    "２０２６-１０",
    "2026-1０",
    "2026_10",
    "2026-10\x00",
    "-2026-10",
]


def one_of_list(values: list[str], extra: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(values), extra)


numbers = one_of_list(
    HOSTILE_NUMBERS,
    st.one_of(
        st.integers().map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.text(max_size=12),
    ),
)
texts = one_of_list(HOSTILE_TEXT, st.text(max_size=60))
durations = one_of_list(HOSTILE_DURATIONS, st.text(max_size=12))
times = one_of_list(HOSTILE_TIMES, st.text(max_size=20))
periods = one_of_list(HOSTILE_PERIODS, st.text(max_size=10))


def check(cli: Cli, url: str, *args: str, allowed: tuple[int, ...] = (0, 1, 2)) -> Any:
    """Run ``mno *args`` and hold it to the contract; return the result."""
    before = counts(url)
    result = cli(*args)
    out = result.stdout + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        repr(result.exception),
    )
    assert result.exit_code in allowed, (args, result.exit_code, out[-2000:])
    assert not LEAKS.search(result.stderr), (args, result.stderr[-2000:])
    assert "Traceback" not in out, (args, out[-2000:])
    if result.exit_code == 2:
        assert counts(url) == before, ("wrote on exit 2", args, result.stderr[-500:])
        assert result.stderr.strip(), ("exit 2 without a message", args)
    return result


@pytest.fixture
def store(cli: Cli, sqlite_url: str, tmp_path: Path) -> str:
    """A SQLite store with tenant ``acme`` (EUR) and metric ``api_calls``."""
    return seed(cli, sqlite_url, tmp_path)


@pytest.fixture
def any_store(cli: Cli, store_url: str, tmp_path: Path) -> str:
    """The same on SQLite and on PostgreSQL (which refuses NUL characters and long text)."""
    return seed(cli, store_url, tmp_path)


def seed(cli: Cli, url: str, tmp_path: Path) -> str:
    assert cli("tenant", "create", "acme", "--currency", "EUR").exit_code == 0
    doc = tmp_path / "metric.yaml"
    doc.write_text(
        "kind: Metric\nmetadata: {name: api_calls}\nspec: {name: API calls, aggregation: sum}\n"
    )
    result = cli("metric", "create", "-f", str(doc))
    assert result.exit_code == 0, result.stderr
    return url


@FUZZ
@given(amount=numbers, description=texts)
def test_amounts(cli: Cli, store: str, amount: str, description: str) -> None:
    check(
        cli,
        store,
        "charge",
        "add",
        "acme",
        "--amount",
        amount,
        "--currency",
        "EUR",
        "--description",
        description or "x",
    )
    check(cli, store, "ledger", "credit", "acme", "--amount", amount, "--currency", "EUR")
    check(cli, store, "billing", "plan", "create", "basic", "--currency", "USD", "--amount", amount)
    check(cli, store, "usage", "record", "acme", "api_calls", amount)


@FUZZ
@given(limit=numbers, since=times, after=numbers, period=periods)
def test_listing_options(
    cli: Cli, store: str, limit: str, since: str, after: str, period: str
) -> None:
    check(cli, store, "audit", "list", "--limit", limit)
    check(cli, store, "events", "list", "--limit", limit, "--after", after)
    check(cli, store, "audit", "list", "--since", since)
    check(cli, store, "invoice", "list", "--period", period)
    check(cli, store, "billing", "run", "--period", period, "--dry-run")
    check(cli, store, "report", "summary", "--period", period, "-o", "json")
    check(
        cli,
        store,
        "ledger",
        "credit",
        "acme",
        "--amount",
        "1",
        "--currency",
        "EUR",
        "--expires",
        since,
    )


@FUZZ
@given(key=texts, name=texts, country=texts, currency=texts, timezone=texts)
def test_tenant_keys_and_names(
    cli: Cli, any_store: str, key: str, name: str, country: str, currency: str, timezone: str
) -> None:
    store = any_store
    check(cli, store, "tenant", "create", key or "k", "--name", name)
    check(
        cli,
        store,
        "tenant",
        "create",
        "fuzz-t",
        "--country",
        country,
        "--currency",
        currency,
        "--timezone",
        timezone,
        "--if-not-exists",
    )
    check(cli, store, "tenant", "update", "acme", "--name", name, "--city", name)
    check(cli, store, "tenant", "show", key or "k")
    check(cli, store, "tax-rate", "create", "fz", "--country", country, "--rate", "20")
    check(
        cli,
        store,
        "charge",
        "add",
        "acme",
        "--amount",
        "1",
        "--currency",
        "EUR",
        "--description",
        name or "x",
        "--id",
        key or "k",
    )


@FUZZ
@given(
    url=texts,
    events=texts,
    rate=texts,
    timeout=durations,
    header=texts,
    since=times,
)
def test_webhook_endpoint_add(
    cli: Cli, store: str, url: str, events: str, rate: str, timeout: str, header: str, since: str
) -> None:
    check(
        cli,
        store,
        "webhook",
        "endpoint",
        "add",
        "http://127.0.0.1:9/x",
        "--no-check",
        "--events",
        events or "*",
        "--rate-limit",
        rate,
        "--timeout",
        timeout,
    )
    check(
        cli,
        store,
        "webhook",
        "endpoint",
        "add",
        url or "u",
        "--no-check",
        "--header",
        header,
        "--since",
        since,
    )
    check(cli, store, "webhook", "deliveries", "list", "--since", since)


csv_cells = one_of_list(HOSTILE_NUMBERS + HOSTILE_TEXT + HOSTILE_TIMES, st.text(max_size=20))


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(
        st.sampled_from(
            [
                "tenant,metric,quantity,at,id",
                "tenant,metric,quantity,at,id,prop.user",
                "tenant,metric,quantity",
                "tenant,tenant,metric,quantity,at,id",
                "",
                "\x00",
                "quantity",
            ]
        )
    )
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        cells = [
            draw(st.sampled_from(["acme", "nobody", ""])),
            draw(st.sampled_from(["api_calls", "nope", ""])),
            draw(csv_cells),
            draw(one_of_list(HOSTILE_TIMES + ["2026-01-01T00:00:00Z"], st.just(""))),
            draw(st.sampled_from(["r1", "r1", "r2", "", "\x00"])),
        ]
        if draw(st.booleans()):
            cells.append(draw(csv_cells))
        rows.append(",".join(cells))
    text = "\n".join([header, *rows]).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        text += draw(st.binary(max_size=40))
    return text


@st.composite
def jsonl_files(draw: st.DrawFn) -> bytes:
    good = {
        "tenant": "acme",
        "metric": "api_calls",
        "quantity": "1",
        "at": "2026-01-01T00:00:00Z",
        "id": "r1",
    }
    lines: list[bytes] = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(b"{not json")
        elif kind == 1:
            lines.append(b"[" * 5000 + b"]" * 5000)
        elif kind == 2:
            lines.append(json.dumps([good]).encode())
        elif kind == 3:
            lines.append(draw(st.binary(max_size=40)))
        elif kind == 4:
            lines.append(b'{"tenant": "acme", "tenant": "acme", "metric": "api_calls"}')
        elif kind == 5:
            value: Any = draw(
                st.one_of(
                    st.sampled_from(HOSTILE_NUMBERS),
                    st.integers(),
                    st.floats(),
                    st.none(),
                    st.booleans(),
                    st.lists(st.integers(), max_size=2),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                )
            )
            field = draw(st.sampled_from(sorted(good) + ["props", "extra"]))
            lines.append(json.dumps({**good, field: value}).encode())
        elif kind == 6:
            lines.append(b"null")
        elif kind == 7:
            lines.append(b'"string"')
        elif kind == 8:
            lines.append(b'{"a": ' * 3000 + b"1" + b"}" * 3000)
        else:
            lines.append(json.dumps(good).encode())
    return b"\n".join(lines)


@FUZZ
@given(csv=csv_files(), jsonl=jsonl_files())
def test_usage_import(cli: Cli, any_store: str, tmp_path: Path, csv: bytes, jsonl: bytes) -> None:
    for name, data in (("u.csv", csv), ("u.jsonl", jsonl)):
        f = tmp_path / name
        f.write_bytes(data)
        check(cli, any_store, "usage", "import", str(f), "--dry-run")
        check(cli, any_store, "usage", "import", str(f))


yaml_scalars = one_of_list(
    HOSTILE_NUMBERS + HOSTILE_TEXT + HOSTILE_DURATIONS + HOSTILE_TIMES, st.text(max_size=15)
)


@st.composite
def yaml_documents(draw: st.DrawFn) -> bytes:
    kind = draw(
        st.sampled_from(["Tenant", "App", "Plan", "Metric", "WebhookEndpoint", "TaxRate", "X"])
    )
    field = draw(
        st.sampled_from(
            [
                "name",
                "currency",
                "country",
                "timezone",
                "tier",
                "amount",
                "rate",
                "url",
                "events",
                "timeout",
                "domains",
                "parent",
                "aggregation",
                "charges",
            ]
        )
    )
    value = json.dumps(draw(yaml_scalars))
    name = json.dumps(draw(st.one_of(st.sampled_from(["acme", "x" * 300, "", "A B"]), texts)))
    body = f"kind: {kind}\nmetadata: {{name: {name}}}\nspec: {{{field}: {value}}}\n"
    variant = draw(st.integers(0, 6))
    if variant == 1:
        body += "---\n" + body  # a duplicate id
    elif variant == 2:
        body = "[" * 3000 + "]" * 3000
    elif variant == 3:
        body = "a: &a [1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" + "".join(
            f"c{i}: &c{i} [*{'b' if i == 0 else f'c{i - 1}'}] \n" for i in range(1)
        )
    elif variant == 4:
        body = body.replace("\n", "\n\x00", 1)
    elif variant == 5:
        return draw(st.binary(max_size=60))
    return body.encode("utf-8", "surrogatepass")


@FUZZ
@given(doc=yaml_documents())
def test_validate_documents(cli: Cli, store: str, tmp_path: Path, doc: bytes) -> None:
    f = tmp_path / "doc.yaml"
    f.write_bytes(doc)
    check(cli, store, "validate", "-f", str(f))
    check(cli, store, "apply", "-f", str(f), "--dry-run")
