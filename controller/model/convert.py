"""Generic conversion between plain YAML/JSON objects and typed frozen dataclasses.

Every resource kind is a tree of frozen dataclasses; this module is the one
place that knows how to read and write them, so adding a kind is only writing
its dataclasses (see `meshlet.controller.model.kinds`).

Naming: a snake_case field is spelled camelCase in YAML (`service_account_name`
→ `serviceAccountName`, `from_` → `from`); `yfield(name="clusterIP")` overrides the spelling and
`yfield(warn_aliases=("mTLS",))` accepts a second spelling with a warning; an
alias may come with an adapter for a differently shaped value, e.g.
`warn_aliases=(("headers", lambda v: [{"name": h} for h in v]),)`.

Supported field types: str, int, float, bool, `X | None`, unions of scalars
(`int | str`), `Literal[...]`, `tuple[X, ...]`, `list[X]`, `dict[str, X]`,
nested dataclasses and `Any` (kept as plain data, for parts we pass through).

A dataclass may define `validate(self) -> Iterable[tuple[str, str]]` yielding
(relative path, message) for checks the types cannot express; the decoder
calls it after building the instance.

Errors are collected, not raised one at a time: `from_obj` raises one
`ConversionError` listing every `FieldIssue` (path + message).
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING
from typing import Any, TypeVar

T = TypeVar("T")

_YAML_NAME = "meshlet.yaml_name"
_WARN_ALIASES = "meshlet.warn_aliases"

# Keys a resource document carries besides its dataclass fields.
ENVELOPE_KEYS = ("apiVersion", "kind")


@dataclasses.dataclass(frozen=True)
class FieldIssue:
    """One problem at one place of a document."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConversionError(ValueError):
    """The data does not fit the type; `issues` lists every problem found."""

    def __init__(self, issues: list[FieldIssue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues))


def yfield(
    name: str | None = None,
    *,
    warn_aliases: tuple[str | tuple[str, Callable[[Any], Any]], ...] = (),
    default: Any = MISSING,
    default_factory: Any = MISSING,
) -> Any:
    """A dataclass field with an explicit YAML name and/or accepted-with-warning aliases."""
    aliases = {a: None for a in warn_aliases if isinstance(a, str)}
    aliases.update({a[0]: a[1] for a in warn_aliases if isinstance(a, tuple)})
    metadata = {_YAML_NAME: name, _WARN_ALIASES: aliases}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclasses.dataclass(frozen=True)
class _FieldInfo:
    attr: str
    yaml: str
    tp: Any
    required: bool
    aliases: Mapping[str, Callable[[Any], Any] | None]
    """accepted other spellings -> adapter of their value (None: same shape)"""
    empty_default: bool
    """the default is None or an empty collection, so to_obj may leave such a value out"""


def _allows_none(hint: Any) -> bool:
    if hint is Any or hint is type(None):
        return True
    return type(None) in typing.get_args(hint)


@functools.cache
def _fields(cls: type) -> tuple[_FieldInfo, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        yaml = f.metadata.get(_YAML_NAME) or camel(f.name)
        required = f.default is MISSING and f.default_factory is MISSING
        if f.default is None and not _allows_none(hints[f.name]):
            # A subclass that narrows an inherited `spec: Any = None` to `spec: DeploymentSpec`
            # keeps the inherited default; a type that excludes None still means required.
            required = True
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        empty_default = default is None or (isinstance(default, (tuple, list, dict)) and not default)
        out.append(_FieldInfo(f.name, yaml, hints[f.name], required, f.metadata.get(_WARN_ALIASES, {}),
                              empty_default))
    return tuple(out)


def yaml_names(cls: type) -> list[str]:
    """The YAML spellings of the fields of dataclass `cls` (for docs and suggestions)."""
    return [fi.yaml for fi in _fields(cls)]


def describe(value: Any) -> str:
    """A short rendering of a bad value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate (case-insensitive), if any is close enough."""
    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    if word.lower() in lowered:
        return lowered[word.lower()]
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_SCALAR_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


@functools.cache
def _shape(tp: Any) -> str:
    """How the decoder treats a type (cached: decoding is on the store's hot path)."""
    if tp is Any:
        return "any"
    if _is_union(tp):
        return "union"
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "literal"
    if origin in (tuple, list):
        return "sequence"
    if origin is dict:
        return "mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "enum"
    if dataclasses.is_dataclass(tp):
        return "dataclass"
    if tp in _SCALAR_NAMES:
        return "scalar"
    raise TypeError(f"meshlet.model cannot convert type {tp!r}")


@functools.cache
def _lookup(cls: type) -> tuple[dict[str, _FieldInfo], dict[str, _FieldInfo]]:
    infos = _fields(cls)
    return {fi.yaml: fi for fi in infos}, {alias: fi for fi in infos for alias in fi.aliases}


class _Decoder:
    def __init__(self, warnings: list[str] | None, envelope: bool, strict: bool = True) -> None:
        self.issues: list[FieldIssue] = []
        self.warnings = warnings
        self.envelope = envelope  # top-level object may carry apiVersion/kind
        self.strict = strict  # False: ignore unknown fields (data written by another version of meshlet)

    def fail(self, path: str, message: str) -> Any:
        self.issues.append(FieldIssue(path, message))
        return None

    def decode(self, tp: Any, data: Any, path: str) -> Any:
        shape = _shape(tp)
        if shape == "scalar":
            if type(data) is tp:  # the common case, without building messages
                return data
            return self._scalar(tp, data, path)
        if shape == "dataclass":
            return self._dataclass(tp, data, path)
        if shape == "any":
            return data
        if shape == "union":
            return self._union(tp, data, path)
        if shape == "literal":
            choices = typing.get_args(tp)
            if data in choices and type(data) is type(choices[0]):
                return data
            return self.fail(path, f"must be one of {', '.join(map(str, choices))}; got {describe(data)}")
        if shape == "sequence":
            return self._sequence(tp, typing.get_origin(tp), data, path)
        if shape == "mapping":
            return self._mapping(tp, data, path)
        try:  # enum
            return tp(data)
        except ValueError:
            return self.fail(path, f"must be one of {', '.join(str(m.value) for m in tp)}; got {describe(data)}")

    def _scalar(self, tp: type, data: Any, path: str) -> Any:
        ok = isinstance(data, tp) and not (tp is not bool and isinstance(data, bool))
        if tp is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if not ok:
            return self.fail(path, f"expected {_SCALAR_NAMES[tp]}, got {describe(data)}")
        return data

    def _union(self, tp: Any, data: Any, path: str) -> Any:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None and len(args) < len(typing.get_args(tp)):
            return None
        if len(args) == 1:
            return self.decode(args[0], data, path)
        # Unions of scalars (int | str): pick the member matching the value's own type.
        for arg in args:
            if arg in _SCALAR_NAMES and isinstance(data, arg) and not (arg is not bool and isinstance(data, bool)):
                return data
        if float in args and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        names = " or ".join(_SCALAR_NAMES.get(a, getattr(a, "__name__", str(a))) for a in args)
        return self.fail(path, f"expected {names}, got {describe(data)}")

    def _sequence(self, tp: Any, origin: type, data: Any, path: str) -> Any:
        if not isinstance(data, (list, tuple)):
            return self.fail(path, f"expected a list, got {describe(data)}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [self.decode(item_tp, item, f"{path}[{i}]") for i, item in enumerate(data)]
        return tuple(items) if origin is tuple else items

    def _mapping(self, tp: Any, data: Any, path: str) -> Any:
        if not isinstance(data, Mapping):
            return self.fail(path, f"expected a mapping, got {describe(data)}")
        key_tp, val_tp = typing.get_args(tp) or (str, Any)
        out = {}
        for key, value in data.items():
            if key_tp is str and not isinstance(key, str):
                self.fail(join(path, str(key)), f"keys must be strings, got {describe(key)}")
                continue
            if key_tp is int and isinstance(key, str) and key.isdigit():
                key = int(key)  # JSON (the store) spells integer keys as strings
            if key_tp is int and (not isinstance(key, int) or isinstance(key, bool)):
                self.fail(join(path, str(key)), f"keys must be integers, got {describe(key)}")
                continue
            out[key] = self.decode(val_tp, value, join(path, str(key)))
        return out

    def _dataclass(self, cls: type, data: Any, path: str) -> Any:
        envelope, self.envelope = self.envelope, False
        if not isinstance(data, Mapping):
            return self.fail(path, f"expected a mapping, got {describe(data)}")
        infos = _fields(cls)
        by_yaml, by_alias = _lookup(cls)
        before = len(self.issues)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            fi = by_yaml.get(key) if isinstance(key, str) else None
            if fi is None and isinstance(key, str) and key in by_alias:
                fi = by_alias[key]
                if self.warnings is not None:
                    self.warnings.append(f"{join(path, key)}: '{key}' is accepted as a spelling of '{fi.yaml}'; "
                                         f"please write '{fi.yaml}'")
                if fi.yaml in data:
                    self.fail(join(path, key), f"both '{key}' and '{fi.yaml}' given; keep only '{fi.yaml}'")
                    continue
                adapter = fi.aliases[key]
                if adapter is not None and value is not None:
                    try:
                        value = adapter(value)
                    except (TypeError, ValueError, KeyError, AttributeError) as e:
                        self.fail(join(path, key), f"cannot be read as '{fi.yaml}': {e or type(e).__name__}")
                        continue
            if fi is None:
                if (envelope and key in ENVELOPE_KEYS) or not self.strict:
                    continue
                hint = suggest(str(key), list(by_yaml))
                self.fail(join(path, str(key)), "unknown field" + (f"; did you mean '{hint}'?" if hint else ""))
                continue
            if value is None and not fi.required:
                continue  # `labels:` with nothing after it means "not set"
            kwargs[fi.attr] = self.decode(fi.tp, value, join(path, fi.yaml))
        for fi in infos:
            if fi.required and fi.attr not in kwargs:
                self.fail(join(path, fi.yaml), "missing required field")
        if len(self.issues) > before:
            return None
        instance = cls(**kwargs)
        validate = getattr(instance, "validate", None) if self.strict else None
        if callable(validate):
            for rel, message in validate():
                self.fail(join(path, rel), message)
        return instance


def from_obj(cls: type[T], data: Any, path: str = "", *, warnings: list[str] | None = None,
             strict: bool = True) -> T:
    """Build `cls` from plain data; raises ConversionError listing every problem.

    Warnings (aliases used) are appended to `warnings` when given. The top-level
    mapping may carry `apiVersion`/`kind` (checked by the registry, not here).
    strict=False ignores unknown fields and skips `validate` hooks (for stored data: validated when
    written, possibly by another version of meshlet with other rules).
    """
    decoder = _Decoder(warnings, envelope=True, strict=strict)
    value = decoder.decode(cls, data, path)
    if decoder.issues:
        raise ConversionError(decoder.issues)
    return typing.cast(T, value)


def to_obj(instance: Any) -> Any:
    """Plain data (dicts with YAML names, lists, scalars) for a dataclass tree.

    None values and empty collections are left out, so `from_obj(to_obj(x)) == x`
    for anything that defaults to None or empty.
    """
    if dataclasses.is_dataclass(instance) and not isinstance(instance, type):
        out: dict[str, Any] = {}
        api_version = getattr(type(instance), "api_version", None)
        kind = getattr(type(instance), "kind", None)
        if isinstance(api_version, str) and isinstance(kind, str) and api_version and kind:
            out["apiVersion"] = api_version
            out["kind"] = kind
        for fi in _fields(type(instance)):
            value = getattr(instance, fi.attr)
            if value is None or (isinstance(value, (tuple, list, dict)) and not value and fi.empty_default):
                continue
            out[fi.yaml] = to_obj(value)
        return out
    if isinstance(instance, enum.Enum):
        return instance.value
    if isinstance(instance, (list, tuple)):
        return [to_obj(v) for v in instance]
    if isinstance(instance, Mapping):
        return {k: to_obj(v) for k, v in instance.items()}
    return instance
