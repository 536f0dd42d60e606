"""JSON Schemas of the documents, for editors (yaml-language-server) and CI.

``for_kind("Tenant")`` describes one kind's whole document; ``combined()`` accepts any
kind, choosing the spec schema from the ``kind`` field. Point an editor at it with a
``# yaml-language-server: $schema=./mno.schema.json`` comment on the first line.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from mno.gitops import kinds
from mno.gitops.kinds import REGISTRY, order

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_METADATA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "properties": {
                "mno.io/protect": {
                    "type": "string",
                    "enum": ["true", "false"],
                    "description": '"true": prune never deletes this resource.',
                }
            },
        },
    },
}


def _envelope(kind: str, spec_ref: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": False,
        "required": ["kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "mno.io/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec_ref,
        },
    }


def _specs(kind_names: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (REGISTRY[k].spec_model, "validation") for k in kind_names
    ]
    refs, top = models_json_schema(models, ref_template="#/$defs/{model}")
    by_kind = {k: refs[(REGISTRY[k].spec_model, "validation")] for k in kind_names}
    return by_kind, top.get("$defs", {})


def for_kind(name: str) -> dict[str, Any]:
    adapter = kinds.get(name)
    specs, defs = _specs([adapter.kind])
    schema = {"$schema": DIALECT, "title": f"mno {adapter.kind}"}
    schema |= _envelope(adapter.kind, specs[adapter.kind], adapter.description)
    return schema | {"$defs": defs}


def combined() -> dict[str, Any]:
    names = order()
    specs, defs = _specs(names)
    return {
        "$schema": DIALECT,
        "title": "mno documents",
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": names}},
        "oneOf": [_envelope(k, specs[k], REGISTRY[k].description) for k in names],
        "$defs": defs,
    }
