"""The contract of a document kind: one adapter per domain resource type.

An adapter names its kind, its pydantic spec model, the kinds it depends on (applied
first, deleted last), how its identity maps to the store (``metadata.name`` is a tenant's
key, an app's code, ...) and how to read and write it. Reads load the current state of the
whole kind in a fixed number of queries; writes go through the domain functions, so every
change writes its audit row and outbox event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from mno.errors import BadInput, Conflict

if TYPE_CHECKING:
    from sqlmodel import Session

T = TypeVar("T")


class Spec(BaseModel):
    """Base of every spec model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


def rule(fn: Callable[..., T], value: Any, *args: Any) -> T:
    """Run one of mno's validators inside a pydantic validator (BadInput → ValueError)."""
    try:
        return fn(value, *args)
    except BadInput as exc:
        raise ValueError(str(exc)) from None


def blank_to_none(value: T) -> T | None:
    return None if value == "" else value


class Kind:
    """One document kind. Subclasses set the class attributes and the store methods."""

    kind: ClassVar[str]
    plural: ClassVar[str]
    spec_model: ClassVar[type[BaseModel]]
    description: ClassVar[str] = ""
    depends_on: ClassVar[tuple[str, ...]] = ()
    immutable: ClassVar[tuple[str, ...]] = ()
    in_store: ClassVar[bool] = True
    # a flag the operator must give before prune may delete one (e.g. tenants: offboarding)
    delete_flag: ClassVar[str | None] = None

    def check_name(self, name: str) -> None:
        """Raise ValueError/BadInput when ``name`` cannot identify this kind."""

    def refs(self, name: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
        """(kind, name) pairs this resource needs to exist first."""
        return []

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        """name → full spec (JSON values, normalised like the model) of every resource."""
        raise NotImplementedError

    def create(self, session: Session, name: str, spec: dict[str, Any]) -> str | None:
        """Create one resource; return its id when the store has no natural key for it
        (the ownership row then links the name to it), else None."""
        raise NotImplementedError

    def create_many(
        self, session: Session, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> dict[str, str]:
        """Create resources in the order given (dependencies first); name → id as above."""
        ids = {}
        for name, spec in items:
            target = self.create(session, name, spec)
            if target is not None:
                ids[name] = target
        return ids

    def update(
        self, session: Session, name: str, changes: dict[str, Any], spec: dict[str, Any]
    ) -> str | None:
        """Set the ``changes`` fields (``spec`` is the full desired spec). Returns a new
        id when the update replaced the row (kinds without a natural key), else None."""
        raise NotImplementedError

    def delete(self, session: Session, name: str) -> None:
        raise Conflict(f"{self.kind} resources cannot be deleted by apply")

    def default(self, field: str) -> Any:
        """The JSON value of a spec field's default."""
        info = self.spec_model.model_fields.get(field)
        if info is None or info.is_required():
            return None
        value = info.get_default(call_default_factory=True)
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value

    def export_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec written by ``mno export``: fields equal to their default are left out,
        nested ones too."""
        try:
            model = self.spec_model.model_validate(spec)
            return model.model_dump(mode="json", exclude_defaults=True)
        except ValidationError:
            pass  # a hand-made row the documents could not express: top-level only
        out = {}
        for key, info in self.spec_model.model_fields.items():
            if key not in spec:
                continue
            default = info.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                default = default.model_dump(mode="json")
            if spec[key] != default or info.is_required():
                out[key] = spec[key]
        return out


class FileKind(Kind):
    """Settings kept in files (platform.yaml, agents.yaml): validated, never in the store."""

    in_store = False

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        return {}
