"""Every command of the README's ```bash blocks runs as written.

The blocks run in order, each command line (backslash continuations joined, comment-only
lines skipped) in-process, in a fresh ``MNO_HOME`` set up by ``mno quickstart`` on SQLite,
from a directory holding the repository's ``configs``; ``&&``, ``|| [ $? -eq 1 ]`` and
``>``/``<`` redirections are followed as bash would. A command that exits non-zero
fails the test, unless ``SKIP`` below says why it cannot run here; the reasons are the
whole list. Placeholders a command needs (``LEAD_ID``, ``CODE``, an endpoint's ``ID``) are
taken from what earlier commands printed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import Cli

ROOT = Path(__file__).resolve().parent.parent

# (pattern of a command line, why it cannot run in this test)
SKIP: list[tuple[str, str]] = [
    (r"^python3 -m pip install", "installs the package"),
    (r"^scripts/test", "runs the test suite itself"),
    (r"\[-|\w ?\| ?\w|…|<\w+>", "a synopsis (a|b alternatives, [optional] parts, …)"),
    (r"^mno (instance|host) ", "needs a Docker engine"),
    (r"^mno agents run ", "a daemon that runs until stopped"),
    (r"^mno edge ", "needs a running Caddy and an edge section in the platform YAML"),
    (r"^mno webhook listen ", "a server that runs until stopped"),
    (r"> /etc/", "writes into /etc"),
    (r"^mno secret set \w+\s*$", "prompts for the value"),
    (
        r"^mno (connector (test|discover|auth)|sync|record history"
        r"|connection (add|pause|resume|remove))",
        "needs the connector's API running",
    ),
    (r"^mno webhook test ", "sends to the example receiver, which does not exist"),
    (r"DELIVERY_ID", "needs a delivery, which the dispatcher agent makes"),
]


def command_lines(text: str) -> list[str]:
    """The command lines of every ```bash block, continuations joined."""
    lines: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


def skip_reason(line: str) -> str | None:
    command = re.split(r"\s#", line)[0]  # not its trailing comment
    for pattern, reason in SKIP:
        if re.search(pattern, command):
            return reason
    return None


def test_command_lines_are_found() -> None:
    lines = command_lines((ROOT / "README.md").read_text())
    assert any(line.startswith("mno tenant create") for line in lines)
    assert not any(line.endswith("\\") for line in lines)
    assert skip_reason("mno instance stop|start blog-acme") is not None
    assert skip_reason("mno tenant list --status active -o json") is None


def test_readme_commands_run(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(work)
    monkeypatch.setenv("MNO_WATCH_COUNT", "1")  # `--watch` renders once, then returns
    first = cli("quickstart")
    assert first.exit_code == 0, first.stderr
    found: dict[str, str] = {}
    failures: list[str] = []
    ran = 0
    for line in command_lines((ROOT / "README.md").read_text()):
        if skip_reason(line):
            continue
        command = substitute(line, found)
        if command is None:
            failures.append(f"{line}\n    a placeholder no earlier command printed")
            continue
        for args, allowed, out_file, in_file in steps(command):
            stdin = (work / in_file).read_text() if in_file else None
            result = cli(*args, input=stdin)
            ran += 1
            remember(args, result.stdout + result.stderr, found)
            if out_file:
                (work / out_file).write_text(result.stdout)
            if result.exit_code not in allowed:
                failures.append(f"{command}\n    exit {result.exit_code}: {result.stderr.strip()}")
                break
    assert not failures, "\n".join(failures)
    assert ran >= 40, ran


def steps(line: str) -> list[tuple[list[str], set[int], str | None, str | None]]:
    """``line`` as in-process runs: (arguments, exit codes accepted, file for stdout, file
    for stdin). ``a && b`` runs both; ``a || [ $? -eq 1 ]`` accepts exit 1 too."""
    tokens = shlex.split(line, comments=True)
    out: list[tuple[list[str], set[int], str | None, str | None]] = []
    current: list[str] = []
    i = 0
    while i <= len(tokens):
        token = tokens[i] if i < len(tokens) else "&&"
        if token in ("&&", "||"):
            assert current[0] == "mno", line
            args, out_file, in_file = redirections(current[1:])
            out.append((args, {0}, out_file, in_file))
            current = []
            if token == "||":
                rest = tokens[i + 1 :]
                assert rest == ["[", "$?", "-eq", "1", "]"], line
                out[-1][1].add(1)
                break
        else:
            current.append(token)
        i += 1
    return out


def redirections(args: list[str]) -> tuple[list[str], str | None, str | None]:
    out_file = in_file = None
    plain: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == ">":
            out_file = next(it)
        elif arg == "<":
            in_file = next(it)
        else:
            plain.append(arg)
    return plain, out_file, in_file


UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def remember(args: list[str], output: str, found: dict[str, str]) -> None:
    """Keep the ids and codes a create or add command printed (a ``key<TAB>value`` table,
    or the id in its message)."""
    if not set(args) & {"create", "add"}:
        return
    noun = args[0]
    for key, value in re.findall(r"^(id|verification_code)\t(\S+)$", output, re.M):
        found[f"{noun}.{key}"] = value
    if f"{noun}.id" not in found and (match := re.search(UUID, output)):
        found[f"{noun}.id"] = match.group()


PLACEHOLDERS = {
    "LEAD_ID": "lead.id",
    "CODE": "lead.verification_code",
    "ID": "webhook.id",
}


def substitute(line: str, found: dict[str, str]) -> str | None:
    for name, key in PLACEHOLDERS.items():
        if re.search(rf"\b{name}\b", line):
            if key not in found:
                return None
            line = re.sub(rf"\b{name}\b", found[key], line)
    return line
