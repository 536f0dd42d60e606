"""mno validate | diff | plan | apply | export | schema: the platform as YAML documents.

CI runs ``mno validate -f configs`` → ``mno diff -f configs`` (exit 0 no change, 1 changes,
2 or more an error) → ``mno plan -f configs --out plan.json`` → ``mno apply plan.json``.

The gitops modules are imported inside the commands: they load SQLAlchemy and every kind,
which ``mno --help`` does not need.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mno.cli.output import Format, OutputOpt, counter, render, success
from mno.errors import BadInput

if TYPE_CHECKING:
    from mno.gitops.changes import ChangeSet

FilesOpt = Annotated[
    list[Path] | None,
    typer.Option("--filename", "-f", help="A YAML file or a directory (recursive); repeat."),
]
SourceOpt = Annotated[
    str,
    typer.Option(help="Name of this set of documents (ownership and prune inventory)."),
]
PruneOpt = Annotated[
    bool, typer.Option("--prune", help="Delete resources of --source missing from the files.")
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force-conflicts", help="Take over fields last set by another source."),
]
EmptyOpt = Annotated[
    bool,
    typer.Option("--allow-empty", help="Allow a prune that deletes every resource of a source."),
]
OffboardOpt = Annotated[
    bool, typer.Option("--allow-offboard", help="Allow prune to offboard and delete tenants.")
]


def _files(files: list[Path] | None) -> list[Path]:
    if not files:
        raise BadInput("no documents given", "use -f FILE or -f DIR")
    return files


def _print_problems(problems: list[Any]) -> None:
    from mno.cli import output

    for p in problems:
        output.error(str(p))


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _leaves(path: str, before: Any, after: Any) -> list[tuple[str, Any, Any]]:
    """A nested change as the leaf paths that differ (``a.b[0].c: x → y``)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in [*before, *(k for k in after if k not in before)]:
            if before.get(key) != after.get(key):
                out += _leaves(f"{path}.{key}", before.get(key), after.get(key))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            if b != a:
                out += _leaves(f"{path}[{i}]", b, a)
        return out
    return [(path, before, after)]


def _show_changes(cs: ChangeSet, fmt: Format, *, verb: str = "would") -> None:
    from mno.cli import output

    if fmt is not Format.table:
        render(cs.as_dict(), fmt)
        return
    con = output.console()
    marks = {"create": "+", "update": "~", "delete": "-"}
    for c in cs.changes:
        note = f"  ({c.note})" if c.note else ""
        done = {"create": "created", "update": "updated", "delete": "deleted"}
        label = c.action if verb == "would" else done[c.action]
        con.print(f"{marks[c.action]} {c.ref} {label}{note}", markup=False, highlight=False)
        if verb != "would":
            continue  # apply lists what it did; diff and plan show the fields
        for f in c.fields:
            flags = []
            if f.drift:
                flags.append("drift: changed outside gitops")
            if f.conflict:
                flags.append(f"conflict: managed by {f.conflict}")
            tail = f"  [{'; '.join(flags)}]" if flags else ""
            if c.action == "create":
                line = f"    {f.field}: {_value(f.after)}"
            elif c.action == "delete":
                line = f"    {f.field}: {_value(f.before)}"
            else:
                for path, before, after in _leaves(f.field, f.before, f.after):
                    line = f"    {path}: {_value(before)} → {_value(after)}"
                    con.print(line + tail, markup=False, highlight=False)
                continue
            con.print(line + tail, markup=False, highlight=False)
    for ref in cs.protected:
        con.print(f"= {ref} kept (mno.io/protect)", markup=False, highlight=False)
    s = cs.summary()
    if cs.has_changes:
        con.print(
            f"{s['create']} to create, {s['update']} to update, {s['delete']} to delete"
            if verb == "would"
            else f"{s['create']} created, {s['update']} updated, {s['delete']} deleted",
            markup=False,
            highlight=False,
        )
    else:
        con.print("No changes.", markup=False, highlight=False)


def validate(
    filename: FilesOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Check documents; report every problem with file:line:column (exit 2 on any)."""
    from mno.gitops import documents

    docs, problems = documents.load_with_problems(_files(filename))
    counts = dict(sorted(Counter(d.kind for d in docs).items()))
    if output is not Format.table:
        render(
            {
                "valid": not problems,
                "documents": len(docs),
                "kinds": counts,
                "problems": [p.as_dict() for p in problems],
            },
            output,
        )
    else:
        _print_problems(problems)
    if problems:
        raise typer.Exit(2)
    if output is Format.table:
        detail = ", ".join(f"{k}: {n}" for k, n in counts.items()) or "none"
        success(f"{len(docs)} documents valid ({detail})")


def diff(
    filename: FilesOpt = None,
    prune: PruneOpt = False,
    source: SourceOpt = "default",
    output: OutputOpt = Format.table,
) -> None:
    """Show what apply would change. Exit 0 no change, 1 changes, 2 or more an error."""
    from mno.cli import handle_error
    from mno.gitops import diff as diff_mod
    from mno.gitops import documents
    from mno.store.db import session_scope

    try:
        docs = documents.load(_files(filename))
        with session_scope(write=False) as s:
            cs = diff_mod.compute(s, docs, source=source, prune=prune)
    except documents.DocumentErrors as exc:
        _print_problems(exc.problems)
        raise typer.Exit(2) from exc
    except Exception as exc:  # noqa: BLE001 - errors must not look like "changes"
        raise typer.Exit(max(2, handle_error(exc))) from exc
    _show_changes(cs, output)
    raise typer.Exit(1 if cs.has_changes else 0)


def plan(
    filename: FilesOpt = None,
    out: Annotated[Path, typer.Option("--out", help="Where to write the plan (JSON).")] = Path(
        "plan.json"
    ),
    prune: PruneOpt = False,
    source: SourceOpt = "default",
    force_conflicts: ForceOpt = False,
    allow_empty: EmptyOpt = False,
    allow_offboard: OffboardOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Save a plan of the changes; `mno apply PLAN` applies exactly it, or refuses if stale."""
    from mno.gitops import documents
    from mno.gitops import plan as plan_mod
    from mno.gitops.apply import Options
    from mno.store.db import session_scope

    try:
        docs = documents.load(_files(filename))
    except documents.DocumentErrors as exc:
        _print_problems(exc.problems)
        raise typer.Exit(2) from exc
    opts = Options(
        source=source,
        prune=prune,
        force_conflicts=force_conflicts,
        allow_empty=allow_empty,
        allow_offboard=allow_offboard,
    )
    with session_scope(write=False) as s:
        saved = plan_mod.make(s, docs, opts)
        cs = _changeset_view(saved)
    plan_mod.save(saved, out)
    if output is Format.table:
        _show_changes(cs, output)
        success(f"plan written to {out}")
    else:
        render({"plan": str(out), "summary": saved["summary"], "changes": saved["changes"]}, output)


def _changeset_view(saved: dict[str, Any]) -> ChangeSet:
    from mno.gitops.changes import Change, ChangeSet, FieldChange

    cs = ChangeSet(source=saved["options"]["source"], prune=saved["options"]["prune"])
    for c in saved["changes"]:
        fields = [
            FieldChange(
                f["field"], f["before"], f["after"], f.get("drift", False), f.get("conflict")
            )
            for f in c["fields"]
        ]
        cs.changes.append(Change(c["kind"], c["name"], c["action"], fields, c.get("note")))
    return cs


def apply(
    plan_file: Annotated[
        Path | None, typer.Argument(metavar="PLAN", help="A plan written by `mno plan --out`.")
    ] = None,
    filename: FilesOpt = None,
    prune: PruneOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything, write nothing.")
    ] = False,
    source: SourceOpt = "default",
    force_conflicts: ForceOpt = False,
    allow_empty: EmptyOpt = False,
    allow_offboard: OffboardOpt = False,
    output: OutputOpt = Format.table,
) -> None:
    """Apply documents (-f) or a saved plan in one transaction, dependencies first."""
    from mno.gitops import documents
    from mno.gitops import plan as plan_mod
    from mno.gitops.apply import Options, apply_documents
    from mno.store.db import session_scope

    if plan_file is not None and filename:
        raise BadInput("give either a plan file or -f, not both")
    if plan_file is not None:
        saved = plan_mod.read(plan_file)
        with counter("applying") as on_progress, session_scope() as s:
            cs = plan_mod.apply_plan(s, saved, dry_run=dry_run, on_progress=on_progress)
    else:
        try:
            docs = documents.load(_files(filename))
        except documents.DocumentErrors as exc:
            _print_problems(exc.problems)
            raise typer.Exit(2) from exc
        opts = Options(
            source=source,
            prune=prune,
            dry_run=dry_run,
            force_conflicts=force_conflicts,
            allow_empty=allow_empty,
            allow_offboard=allow_offboard,
        )
        with counter("applying") as on_progress, session_scope() as s:
            cs = apply_documents(s, docs, opts, on_progress)
    if output is not Format.table:
        render(cs.as_dict() | {"dry_run": dry_run}, output)
        return
    _show_changes(cs, output, verb="would" if dry_run else "did")
    if dry_run:
        success("dry run: nothing was written")


def export(
    kind: Annotated[
        list[str] | None, typer.Option("--kind", "-k", help="Only this kind; repeat.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write DIR/<kind>/<name>.yaml instead of stdout."),
    ] = None,
    legacy_out: Annotated[Path | None, typer.Option("-o", hidden=True)] = None,
) -> None:
    """Write the store as documents (deterministic: export → apply → export is identical)."""
    from mno.cli.params import deprecated_out
    from mno.gitops import export as export_mod
    from mno.store.db import session_scope

    out = deprecated_out(out, legacy_out, "-o")
    with session_scope(write=False) as s:
        docs = export_mod.export(s, kind)
    if out is None:
        sys.stdout.write(export_mod.dumps(docs))
        return
    written = export_mod.write(docs, out)
    success(f"{len(written)} documents written under {out}")


def schema(
    kind: Annotated[str | None, typer.Argument(help="One kind (default: all kinds).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write to a file.")] = None,
) -> None:
    """Print the JSON Schema of the documents (for yaml-language-server and CI)."""
    from mno.gitops import schema as schema_mod

    data = schema_mod.for_kind(kind) if kind else schema_mod.combined()
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)
        success(f"schema written to {out}")
