"""Export: the store written back out as documents.

The output is deterministic: kinds in dependency order, names sorted, spec fields in the
model's order and fields equal to their default left out, labels and annotations from the
last apply. So export, apply to an empty store and export again gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mno.gitops import kinds as kinds_mod
from mno.gitops.diff import load_owners

if TYPE_CHECKING:
    from sqlmodel import Session


def export(session: Session, kinds: list[str] | None = None) -> list[dict[str, Any]]:
    """Every resource of ``kinds`` (default: all kinds kept in the store) as documents."""
    wanted = [kinds_mod.get(k).kind for k in kinds] if kinds else kinds_mod.store_kinds()
    owners = load_owners(session)
    out: list[dict[str, Any]] = []
    for kind_name in kinds_mod.order(wanted):
        adapter = kinds_mod.REGISTRY[kind_name]
        if not adapter.in_store:
            continue
        current = adapter.current(session)
        for name in sorted(current):
            metadata: dict[str, Any] = {"name": name}
            owner = owners.get((kind_name, name))
            if owner and owner.labels:
                metadata["labels"] = dict(sorted(owner.labels.items()))
            if owner and owner.annotations:
                metadata["annotations"] = dict(sorted(owner.annotations.items()))
            out.append(
                {
                    "apiVersion": "mno.io/v1",
                    "kind": kind_name,
                    "metadata": metadata,
                    "spec": adapter.export_spec(current[name]),
                }
            )
    return out


def dumps(docs: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return "".join(
        "---\n" + yaml.dump(d, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100)
        for d in docs
    )


def write(docs: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """One file per resource: ``DIR/<plural>/<name>.yaml``."""
    root = Path(out_dir)
    written = []
    for doc in docs:
        folder = root / kinds_mod.REGISTRY[doc["kind"]].plural
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{doc['metadata']['name'].replace('/', '--')}.yaml"
        path.write_text(dumps([doc]))
        written.append(path)
    return written
