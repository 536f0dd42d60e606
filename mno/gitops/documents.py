"""GitOps documents: multi-document YAML files read with a position for every node.

Every document has ``kind``, ``metadata: {name, labels, annotations}`` and ``spec``. A path
may be a file or a directory (read recursively, ``*.yaml`` and ``*.yml`` in name order).
Loading never stops at the first mistake: every problem is collected with its file, line,
column and dotted key, and ``DocumentErrors`` carries them all.

Secrets appear only as ``secret:NAME`` references: a plain string under a key that names a
password, token or secret is a problem, and so is a malformed reference.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from mno import safeyaml
from mno.errors import BadInput
from mno.gitops.kinds import REGISTRY

if TYPE_CHECKING:
    from pydantic import BaseModel

    from mno.gitops.kinds.base import Kind

Path_ = tuple[str | int, ...]
ENVELOPE_KEYS = ("apiVersion", "kind", "metadata", "spec")
METADATA_KEYS = ("name", "labels", "annotations")
API_VERSION = "mno.io/v1"
PROTECT = "mno.io/protect"
SECRET_REF = re.compile(r"^secret:[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # as mno.secrets names
# keys whose last word names a secret: DB_PASSWORD, signing_secret, api-key (not token_url)
SECRET_KEY = re.compile(
    r"(^|[_.-])(password|passwd|secret|token|api[_-]?key|private[_-]?key)$", re.I
)
# files that hold one settings document without a ``kind:`` line
FILE_KINDS = {"platform": "Platform", "agents": "AgentsConfig"}
# directories whose documents may be bare (no envelope; ``name:`` at the top), in the
# format their area's own command reads (``mno connector apply -f``)
BARE_DIRS = {"connectors": "Connector"}


@dataclass(frozen=True)
class Problem:
    """One mistake in a document, with where it is."""

    file: str
    line: int
    column: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "key": self.key,
            "message": self.message,
        }


class DocumentErrors(BadInput):
    """The documents have problems (exit 2); ``problems`` lists every one."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "no documents"
        more = len(self.problems) - 1
        hint = f"and {more} more; see `mno validate`" if more else None
        super().__init__(first, hint)


@dataclass
class Document:
    """One YAML document: the envelope, the raw spec and the positions of its nodes."""

    kind: str
    name: str
    spec: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    file: str = "<memory>"
    line: int = 1
    column: int = 1
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    value_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    model: BaseModel | None = None
    _desired: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _full: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def protected(self) -> bool:
        return str(self.annotations.get(PROTECT, "")).lower() == "true"

    def managed_fields(self) -> list[str]:
        """The top-level spec fields this document sets (what its source manages)."""
        return list(self.desired())

    def desired(self) -> dict[str, Any]:
        """The managed fields, normalised by the kind's model (JSON values)."""
        if self._desired is None:
            if self.model is None:
                self._desired = dict(self.spec)
            else:
                full = self.full_spec()
                given = self.model.model_fields_set
                self._desired = {k: v for k, v in full.items() if k in given}
        return self._desired

    def full_spec(self) -> dict[str, Any]:
        """Every spec field, defaults filled in (what a create writes)."""
        if self._full is None:
            self._full = (
                dict(self.spec) if self.model is None else self.model.model_dump(mode="json")
            )
        return self._full

    def where(self, path: Path_, *, value: bool = True) -> tuple[int, int]:
        """The line and column of ``path`` (or of its nearest ancestor that has one)."""
        marks = self.value_marks if value else self.key_marks
        probe = tuple(path)
        while probe:
            if probe in marks:
                return marks[probe]
            if probe in self.key_marks:
                return self.key_marks[probe]
            probe = probe[:-1]
        return self.line, self.column

    def problem(self, path: Path_, message: str, *, value: bool = True) -> Problem:
        line, column = self.where(path, value=value)
        return Problem(self.file, line, column, dotted(path), message)

    def envelope(self) -> dict[str, Any]:
        """The document as plain data (what a saved plan stores)."""
        metadata: dict[str, Any] = {"name": self.name}
        if self.labels:
            metadata["labels"] = dict(self.labels)
        if self.annotations:
            metadata["annotations"] = dict(self.annotations)
        return {"kind": self.kind, "metadata": metadata, "spec": self.spec}


@contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector. Reading documents and the store's state makes
    many small objects that all live on; the collector would only rescan them again and
    again (a third of the time on 10,000 documents). Reference counting still frees."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# -- reading YAML with positions ------------------------------------------------------


def _loader_class() -> Any:
    return safeyaml.loader_class()


@dataclass
class _Raw:
    data: Any
    file: str
    line: int
    column: int
    key_marks: dict[Path_, tuple[int, int]]
    value_marks: dict[Path_, tuple[int, int]]


def _walk(
    loader: Any,
    node: Any,
    path: Path_,
    keys: dict[Path_, tuple[int, int]],
    values: dict[Path_, tuple[int, int]],
    problems: list[Problem],
    file: str,
) -> Any:
    values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _STR_TAG:
                key = key_node.value
            else:
                key = loader.construct_object(key_node, deep=True)
            at = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key, str):
                key = str(key)
            child = (*path, key)
            if key in out:
                problems.append(
                    Problem(file, at[0], at[1], dotted(child), "duplicate key in the same mapping")
                )
                continue
            keys[child] = at
            out[key] = _walk(loader, value_node, child, keys, values, problems, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = (*path, i)
            keys[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            items.append(_walk(loader, item, child, keys, values, problems, file))
        return items
    if node.tag == _STR_TAG:
        return node.value
    return loader.construct_object(node, deep=True)


_STR_TAG = "tag:yaml.org,2002:str"


def _aliases_within_budget(node: Any, file: str, problems: list[Problem]) -> bool:
    """False, with a problem, for a document whose aliases expand past the budget."""
    refusal = safeyaml.alias_refusal(node)
    if refusal is None:
        return True
    mark = node.start_mark
    problems.append(Problem(file, mark.line + 1, mark.column + 1, "", refusal))
    return False


def parse_text(text: str, file: str = "<stdin>") -> tuple[list[_Raw], list[Problem]]:
    """The documents of one YAML stream, each with its node positions."""
    problems: list[Problem] = []
    raws: list[_Raw] = []
    loader = _loader_class()(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if "&" in text and not _aliases_within_budget(node, file, problems):
                continue
            deep = safeyaml.too_deep(node)
            if deep is not None:
                mark = deep.start_mark
                message = f"YAML nested deeper than {safeyaml.MAX_DEPTH} levels"
                problems.append(Problem(file, mark.line + 1, mark.column + 1, "", message))
                continue
            keys: dict[Path_, tuple[int, int]] = {}
            values: dict[Path_, tuple[int, int]] = {}
            data = _walk(loader, node, (), keys, values, problems, file)
            if data is None:
                continue
            raws.append(
                _Raw(data, file, node.start_mark.line + 1, node.start_mark.column + 1, keys, values)
            )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"not valid YAML: {exc.problem or exc.context}"
        problems.append(Problem(file, line, column, "", message))
    except yaml.YAMLError as exc:
        problems.append(Problem(file, 1, 1, "", f"not valid YAML: {exc}"))
    finally:
        loader.dispose()
    return raws, problems


def yaml_files(path: Path) -> list[Path]:
    """``path`` itself, or every ``*.yaml``/``*.yml`` below it in name order (hidden
    directories and files are skipped)."""
    return [Path(p) for p in _yaml_file_names(path)]


def _yaml_file_names(path: Path) -> list[str]:
    if not path.is_dir():
        return [str(path)]
    found: list[str] = []
    for top, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(
            os.path.join(top, n)
            for n in names
            if n.endswith((".yaml", ".yml")) and not n.startswith(".")
        )
    return sorted(found)


def _display(path: Path | str) -> str:
    text = str(path)
    if not os.path.isabs(text):
        return text
    cwd = os.getcwd() + os.sep
    return text[len(cwd) :] if text.startswith(cwd) else text


# -- envelopes and specs ----------------------------------------------------------------


def _str_map(
    raw: _Raw, value: Any, path: Path_, problems: list[Problem], doc: Document
) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(doc.problem(path, "expected a mapping of strings"))
        return {}
    out = {}
    for k, v in value.items():
        if isinstance(v, bool | int | float) or v is None:
            problems.append(doc.problem((*path, k), "expected a string (quote it)"))
        elif not isinstance(v, str):
            problems.append(doc.problem((*path, k), "expected a string"))
        else:
            out[k] = v
    return out


def _document(raw: _Raw, problems: list[Problem], registry: dict[str, Kind]) -> Document | None:
    data = raw.data
    doc = Document(
        kind="",
        name="",
        spec={},
        file=raw.file,
        line=raw.line,
        column=raw.column,
        key_marks=raw.key_marks,
        value_marks=raw.value_marks,
    )
    if not isinstance(data, dict):
        problems.append(doc.problem((), "a document must be a mapping with kind, metadata, spec"))
        return None
    if "kind" not in data:
        stem = Path(raw.file).stem
        if stem in FILE_KINDS:
            return _settings_file(raw, doc, registry, stem)
        bare = BARE_DIRS.get(Path(raw.file).parent.name)
        if bare in registry and isinstance(data.get("name"), str):
            return _bare(raw, doc, problems, registry, str(bare))
    _check_envelope(data, doc, problems)
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        problems.append(doc.problem(("kind",) if "kind" in data else (), "kind is required"))
        return None
    if kind not in registry:
        known = ", ".join(sorted(registry))
        problems.append(doc.problem(("kind",), f"unknown kind {kind!r} (known: {known})"))
        return None
    doc.kind = kind
    if not _metadata(raw, data, doc, problems, registry[kind]):
        return None
    spec = data.get("spec", {})
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        problems.append(doc.problem(("spec",), "spec must be a mapping"))
        return None
    doc.spec = spec
    return doc


def _settings_file(
    raw: _Raw, doc: Document, registry: dict[str, Kind], stem: str
) -> Document | None:
    """A settings file without an envelope: the whole mapping is the spec."""
    if FILE_KINDS[stem] not in registry:
        return None  # that area has no settings model in this build
    doc.kind, doc.name, doc.spec = FILE_KINDS[stem], stem, raw.data
    doc.key_marks = {("spec", *k): v for k, v in raw.key_marks.items()}
    doc.value_marks = {("spec", *k): v for k, v in raw.value_marks.items()}
    return doc


def _bare(
    raw: _Raw, doc: Document, problems: list[Problem], registry: dict[str, Kind], kind: str
) -> Document:
    """A bare document (``name:`` at the top, the rest is the spec) in its area's folder."""
    data = raw.data
    doc.kind, doc.name = kind, data["name"]
    doc.spec = {k: v for k, v in data.items() if k != "name"}

    def moved(path: Path_) -> Path_:
        return ("metadata", "name") if path == ("name",) else ("spec", *path)

    doc.key_marks = {moved(k): v for k, v in raw.key_marks.items()}
    doc.value_marks = {moved(k): v for k, v in raw.value_marks.items()}
    try:
        registry[kind].check_name(doc.name)
    except (ValueError, BadInput) as exc:
        problems.append(doc.problem(("metadata", "name"), str(exc)))
    return doc


def _check_envelope(data: dict[str, Any], doc: Document, problems: list[Problem]) -> None:
    """Unknown top-level keys and a wrong ``apiVersion``."""
    for key in data:
        if key not in ENVELOPE_KEYS:
            problems.append(
                doc.problem(
                    (key,),
                    f"unknown top-level key (expected {', '.join(ENVELOPE_KEYS)})",
                    value=False,
                )
            )
    if "apiVersion" in data and data["apiVersion"] != API_VERSION:
        problems.append(doc.problem(("apiVersion",), f"expected {API_VERSION}"))


def _metadata(
    raw: _Raw, data: dict[str, Any], doc: Document, problems: list[Problem], kind: Kind
) -> bool:
    """Read ``metadata`` (name, labels, annotations) into ``doc``; False when the document
    has no usable name."""
    metadata = data.get("metadata")
    if not isinstance(metadata, dict):
        where = ("metadata",) if "metadata" in data else ()
        problems.append(doc.problem(where, "metadata with a name is required"))
        return False
    for key in metadata:
        if key not in METADATA_KEYS:
            problems.append(
                doc.problem(
                    ("metadata", key),
                    f"unknown metadata key (expected {', '.join(METADATA_KEYS)})",
                    value=False,
                )
            )
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        name_at: tuple[str, ...] = ("metadata", "name") if "name" in metadata else ("metadata",)
        problems.append(doc.problem(name_at, "metadata.name is required (a string)"))
        return False
    doc.name = name
    try:
        kind.check_name(name)
    except (ValueError, BadInput) as exc:
        problems.append(doc.problem(("metadata", "name"), str(exc)))
    doc.labels = _str_map(raw, metadata.get("labels"), ("metadata", "labels"), problems, doc)
    doc.annotations = _str_map(
        raw, metadata.get("annotations"), ("metadata", "annotations"), problems, doc
    )
    return True


def _check_secrets(doc: Document, value: Any, path: Path_, problems: list[Problem]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            child = (*path, k)
            if isinstance(v, str) and SECRET_KEY.search(str(k)) and not SECRET_REF.match(v):
                problems.append(
                    doc.problem(
                        child, "secrets appear only as secret:NAME references, never as values"
                    )
                )
            else:
                _check_secrets(doc, v, child, problems)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_secrets(doc, v, (*path, i), problems)
    elif isinstance(value, str) and value.startswith("secret:") and not SECRET_REF.match(value):
        problems.append(doc.problem(path, f"malformed secret reference {value!r}"))


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The part of a pydantic error location that exists in the data: union member and
    validator names (``str``, ``FieldMap``, ``function-after[…]``) are dropped."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict):
            out.append(part)  # a key (or the missing key itself)
            node = node.get(part) if part in node else None
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        # else: a scalar was reached; the rest names union members or validators
    return tuple(out)


def _validate_spec(doc: Document, kind: Kind, problems: list[Problem]) -> None:
    _check_secrets(doc, doc.spec, ("spec",), problems)
    try:
        doc.model = kind.spec_model.model_validate(doc.spec)
    except ValidationError as exc:
        found: dict[tuple[int, int, str], list[str]] = {}
        for err in exc.errors():
            path: Path_ = ("spec", *_data_path(doc.spec, tuple(err["loc"])))
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                line, column = doc.where(path, value=False)
                message = "unknown field"
            elif err["type"] == "missing":
                line, column = doc.where(path[:-1], value=False)
                message = "field required"
            else:
                line, column = doc.where(path)
            messages = found.setdefault((line, column, dotted(path)), [])
            if message not in messages:
                messages.append(message)
        for (line, column, key), messages in found.items():
            problems.append(Problem(doc.file, line, column, key, "; or ".join(messages)))


def load(
    paths: Iterable[str | Path],
    *,
    registry: dict[str, Kind] | None = None,
    strict: bool = True,
) -> list[Document]:
    """Every document under ``paths``, validated. With ``strict`` any problem raises
    ``DocumentErrors`` listing them all; otherwise see ``load_with_problems``."""
    docs, problems = load_with_problems(paths, registry=registry)
    if problems and strict:
        raise DocumentErrors(problems)
    return docs


def load_with_problems(
    paths: Iterable[str | Path], *, registry: dict[str, Kind] | None = None
) -> tuple[list[Document], list[Problem]]:
    """Every document and every problem under ``paths``."""
    with no_gc():
        return _load(paths, registry)


def _load(
    paths: Iterable[str | Path], registry: dict[str, Kind] | None
) -> tuple[list[Document], list[Problem]]:
    registry = registry or REGISTRY
    problems: list[Problem] = []
    raws: list[_Raw] = []
    paths = list(paths)
    if not paths:
        raise BadInput("no documents given", "use -f FILE or -f DIR")
    for given in paths:
        if str(given) == "-":
            found, bad = parse_text(sys.stdin.read(), "<stdin>")
            raws.extend(found)
            problems.extend(bad)
            continue
        path = Path(given)
        if not path.exists():
            raise BadInput(f"{given} does not exist")
        for file in _yaml_file_names(path):
            try:
                with open(file, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(Problem(_display(file), 1, 1, "", f"cannot read: {exc}"))
                continue
            found, bad = parse_text(text, _display(file))
            raws.extend(found)
            problems.extend(bad)
    return check(raws, problems, registry)


def from_data(
    items: Sequence[dict[str, Any]], *, registry: dict[str, Kind] | None = None
) -> list[Document]:
    """Documents from plain data (a saved plan, tests); problems raise ``DocumentErrors``."""
    raws = [_Raw(item, "<plan>", i + 1, 1, {}, {}) for i, item in enumerate(items)]
    docs, problems = check(raws, [], registry or REGISTRY)
    if problems:
        raise DocumentErrors(problems)
    return docs


def check(
    raws: Sequence[_Raw], problems: list[Problem], registry: dict[str, Kind]
) -> tuple[list[Document], list[Problem]]:
    docs: list[Document] = []
    seen: dict[tuple[str, str], Document] = {}
    for raw in raws:
        doc = _document(raw, problems, registry)
        if doc is None:
            continue
        _validate_spec(doc, registry[doc.kind], problems)
        first = seen.get((doc.kind, doc.name))
        if first is not None:
            problems.append(
                doc.problem(
                    ("metadata", "name"),
                    f"{doc.ref} is already defined at {first.file}:{first.line}",
                )
            )
            continue
        seen[(doc.kind, doc.name)] = doc
        docs.append(doc)
    _check_hosts_declared_once(docs, problems)
    problems.sort(key=lambda p: (p.file, p.line, p.column))
    return docs, problems


def _check_hosts_declared_once(docs: list[Document], problems: list[Problem]) -> None:
    """A Docker host is listed in a Platform document or is a DockerHost, not both."""
    listed = {
        host.get("name"): doc
        for doc in docs
        if doc.kind == "Platform"
        for host in (doc.spec.get("hosts") or [])
        if isinstance(host, dict)
    }
    for doc in docs:
        if doc.kind == "DockerHost" and doc.name in listed:
            where = listed[doc.name]
            problems.append(
                doc.problem(
                    ("metadata", "name"),
                    f"host {doc.name} is also listed in {where.file}:{where.line} "
                    "(declare a host in one place only)",
                )
            )
