"""The kind registry: (apiVersion, kind) → class, plus the names `meshlet get` accepts.

A `Registry` is immutable once built; the default one (every kind meshlet
knows) is `meshlet.controller.model.kinds.DEFAULT_REGISTRY`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from meshlet.controller.model.convert import (
    ConversionError,
    FieldIssue,
    describe,
    from_obj,
    suggest,
)
from meshlet.controller.model.meta import Resource


class UnknownKind(LookupError):
    """A kind, resource name or apiVersion no registered kind matches."""


@dataclass(frozen=True)
class KindInfo:
    cls: type[Resource]
    plural: str
    short_names: tuple[str, ...] = ()
    extra_api_versions: tuple[str, ...] = ()
    """Other apiVersions accepted for this kind (e.g. Istio's v1alpha3 next to v1)."""
    internal: bool = False
    """Written by meshlet itself, not by users (still listable)."""

    @property
    def kind(self) -> str:
        return self.cls.kind

    @property
    def api_version(self) -> str:
        return self.cls.api_version

    @property
    def api_versions(self) -> tuple[str, ...]:
        return (self.cls.api_version, *self.extra_api_versions)

    @property
    def namespaced(self) -> bool:
        return self.cls.namespaced

    @property
    def group(self) -> str:
        return self.cls.api_version.rpartition("/")[0]

    @property
    def display(self) -> str:
        """kubectl's name for the kind in messages: `service`, `deployment.apps`."""
        return self.kind.lower() + (f".{self.group}" if self.group else "")

    def names(self) -> tuple[str, ...]:
        return (self.kind.lower(), self.plural, *self.short_names, self.display,
                f"{self.plural}.{self.group}" if self.group else self.plural)


class Registry:
    def __init__(self, infos: Iterable[KindInfo]) -> None:
        self._by_kind: dict[str, KindInfo] = {}
        self._by_name: dict[str, KindInfo] = {}
        for info in infos:
            if info.kind in self._by_kind:
                raise ValueError(f"kind {info.kind} registered twice")
            self._by_kind[info.kind] = info
            for name in info.names():
                other = self._by_name.setdefault(name.lower(), info)
                if other is not info:
                    raise ValueError(f"name {name!r} used by both {other.kind} and {info.kind}")

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_kind.values())

    def __repr__(self) -> str:
        return f"<Registry [{', '.join(self._by_kind)}]>"

    def kinds(self) -> list[str]:
        return list(self._by_kind)

    def for_kind(self, kind: str | type[Resource]) -> KindInfo:
        """Info of a kind given its exact Kind, class, or any name `resolve` accepts."""
        if isinstance(kind, type):
            kind = kind.kind
        info = self._by_kind.get(kind)
        return info if info is not None else self.resolve(kind)

    def resolve(self, name: str) -> KindInfo:
        """A kind from what a user typed: `pods`, `po`, `Pod`, `deployment.apps`, `svc`."""
        info = self._by_name.get(name.lower())
        if info is None:
            hint = suggest(name, list(self._by_name))
            raise UnknownKind(f"the server doesn't have a resource type {name!r}"
                              + (f"; did you mean {hint!r}?" if hint else ""))
        return info

    def for_api(self, api_version: str, kind: str) -> KindInfo:
        info = self._by_kind.get(kind)
        if info is None:
            group = api_version.rpartition("/")[0]
            same_group = [i.kind for i in self if any(v.rpartition("/")[0] == group for v in i.api_versions)]
            hint = suggest(kind, same_group)
            raise UnknownKind(f"unknown kind {kind!r} (apiVersion {api_version})"
                              + (f"; did you mean {hint!r}?" if hint else
                                 f"; meshlet knows {', '.join(sorted(self._by_kind))}"))
        if api_version not in info.api_versions:
            raise UnknownKind(f"kind {kind} does not exist in apiVersion {api_version!r}; "
                              f"use apiVersion: {info.api_version}")
        return info

    def decode(self, data: Any, path: str = "", *, warnings: list[str] | None = None,
               strict: bool = True) -> Resource:
        """A typed resource from one manifest document; raises ConversionError (strict: see from_obj)."""
        if not isinstance(data, Mapping):
            raise ConversionError([FieldIssue(path, f"expected a mapping (a resource), got {describe(data)}")])
        api_version, kind = data.get("apiVersion"), data.get("kind")
        issues = []
        if not isinstance(api_version, str) or not api_version:
            issues.append(FieldIssue(_join(path, "apiVersion"), "missing required field" if api_version is None
                                     else f"expected string, got {describe(api_version)}"))
        if not isinstance(kind, str) or not kind:
            issues.append(FieldIssue(_join(path, "kind"), "missing required field" if kind is None
                                     else f"expected string, got {describe(kind)}"))
        if issues:
            raise ConversionError(issues)
        try:
            info = self.for_api(str(api_version), str(kind))
        except UnknownKind as e:
            raise ConversionError([FieldIssue(_join(path, "kind"), str(e))]) from None
        return from_obj(info.cls, data, path, warnings=warnings, strict=strict)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
