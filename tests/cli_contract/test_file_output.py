"""Commands that write a file name it with ``--out FILE``; ``-o`` is the output format
everywhere. Old scripts' ``-o FILE`` (``mno export``, ``mno report html``) and ``--to FILE``
(``mno instance export``) still work, hidden from help, with a warning."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cli_contract.walk import leaves


def test_no_visible_o_option_names_a_file() -> None:
    offenders = []
    writers = 0
    for c in leaves():
        for p in c.command.params:
            if p.param_type_name != "option" or p.hidden:  # typer may vendor click
                continue
            if "--out" in p.opts:
                writers += 1
            if "-o" in p.opts and (
                type(getattr(p, "type", None)).__name__ == "Path" or p.name not in ("output", "fmt")
            ):
                offenders.append(f"{c.name}: {p.opts}")
    assert not offenders, offenders
    assert writers >= 6  # plan, schema, export, report html, invoice export, db backup, ...


@pytest.mark.parametrize(
    ("path", "hidden"),
    [(("export",), "-o"), (("report", "html"), "-o"), (("instance", "export"), "--to")],
)
def test_old_file_flags_are_hidden_from_help(cli: Any, path: tuple[str, ...], hidden: str) -> None:
    result = cli(*path, "-h")
    assert result.exit_code == 0
    assert "--out" in result.stdout
    assert f" {hidden} " not in result.stdout and f" {hidden}," not in result.stdout


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_export_writes_with_out_and_still_with_a_warned_o(
    cli: Any, store_url: str, tmp_path
) -> None:
    assert cli("tenant", "create", "acme", "--name", "Acme").exit_code == 0
    new = cli("export", "--out", tmp_path / "new")
    assert new.exit_code == 0, new.stderr
    assert "deprecated" not in new.stderr
    old = cli("export", "-o", tmp_path / "old")
    assert old.exit_code == 0, old.stderr
    assert "Warning: -o FILE is deprecated, use --out FILE" in old.stderr
    written = sorted(p.relative_to(tmp_path / "new") for p in (tmp_path / "new").rglob("*.yaml"))
    assert written and written == sorted(
        p.relative_to(tmp_path / "old") for p in (tmp_path / "old").rglob("*.yaml")
    )


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_report_html_takes_out_and_a_warned_o(cli: Any, store_url: str, tmp_path) -> None:
    result = cli("report", "html", "--out", tmp_path / "a.html")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a.html").read_text().lstrip().lower().startswith("<!doctype html")
    old = cli("report", "html", "-o", tmp_path / "b.html")
    assert old.exit_code == 0, old.stderr
    assert "deprecated" in old.stderr and (tmp_path / "b.html").exists()


def test_invoice_export_o_is_the_format_and_a_file_name_is_refused(cli: Any) -> None:
    result = cli("invoice", "export", "INV-2026-000001", "-o", "invoice.html")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: -o invoice.html: -o is the format")
    assert "--out FILE" in result.stderr
