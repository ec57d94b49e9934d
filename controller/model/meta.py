"""ObjectMeta and the Resource base every kind derives from."""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Self

from meshlet.controller.model.convert import yfield

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")



def check_subdomain(value: str, what: str = "name") -> str | None:
    """None if `value` is a valid DNS-1123 subdomain, else the reason."""
    if not value:
        return f"{what} must not be empty"
    if len(value) > 253:
        return f"{what} must be at most 253 characters"
    if not DNS1123_SUBDOMAIN.match(value):
        return (f"{what} {value!r} is invalid: use lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit")
    return None


def check_label(value: str, what: str = "name") -> str | None:
    """None if `value` is a valid DNS-1123 label (namespace names, port names), else the reason."""
    if not value:
        return f"{what} must not be empty"
    if len(value) > 63:
        return f"{what} must be at most 63 characters"
    if not DNS1123_LABEL.match(value):
        return (f"{what} {value!r} is invalid: use lower-case letters, digits and '-', "
                "starting and ending with a letter or digit")
    return None


def check_labels(labels: dict[str, str], path: str) -> Iterable[tuple[str, str]]:
    for key, value in labels.items():
        if len(key) > 316 or not LABEL_NAME.match(key):
            yield f"{path}.{key}", "invalid label key"
        if len(value) > 63 or not LABEL_VALUE.match(value):
            yield f"{path}.{key}", f"invalid label value {value!r}"


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: int = 0
    """Store-wide version of the last change of this object; 0 = not stored yet."""
    uid: str = ""
    creation_timestamp: str | None = None
    """RFC 3339 UTC, e.g. 2026-11-25T21:50:00Z; set by the store on create."""
    generation: int = 0
    """Incremented by the store on every spec change (1 on create)."""

    def validate(self) -> Iterable[tuple[str, str]]:
        problem = check_subdomain(self.name)
        if problem:
            yield "name", problem
        if self.namespace is not None:
            problem = check_label(self.namespace, "namespace")
            if problem:
                yield "namespace", problem
        yield from check_labels(self.labels, "labels")


@dataclass(frozen=True, kw_only=True)
class Resource:
    """Base of every kind: subclasses set `api_version`/`kind` and type `spec`/`status`."""

    api_version: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    namespaced: ClassVar[bool] = True

    metadata: ObjectMeta
    spec: Any = None
    status: Any = None

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace, name); namespace is "" for cluster-scoped kinds."""
        return (self.kind, (self.metadata.namespace or "") if self.namespaced else "", self.metadata.name)

    def with_meta(self, **changes: Any) -> Self:
        return replace(self, metadata=replace(self.metadata, **changes))

    def with_status(self, status: Any) -> Self:
        return replace(self, status=status)


@dataclass(frozen=True)
class LabelSelector:
    match_labels: dict[str, str] = field(default_factory=dict)
    match_expressions: tuple[Any, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels.items())


@dataclass(frozen=True)
class TemplateMeta:
    """metadata of a pod template: labels and annotations (name is allowed, unused)."""

    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    def validate(self) -> Iterable[tuple[str, str]]:
        yield from check_labels(self.labels, "labels")


__all__ = [
    "LabelSelector",
    "ObjectMeta",
    "Resource",
    "TemplateMeta",
    "check_label",
    "check_subdomain",
    "yfield",
]
