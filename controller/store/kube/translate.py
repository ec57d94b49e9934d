"""Objects between the Kubernetes API (plain JSON) and the typed model (pure, no sockets).

Reading is lenient: a cluster's objects carry many fields the model does not
know (managedFields, ownerReferences, nodeName, ipFamilies, ...), which are
ignored; the model's own checks are not re-run (the API server validated the
object). An object that still does not fit (a known field of an unexpected
type) raises `Untranslatable` naming it, so a caller logs and skips that one
object instead of failing a whole list or watch. Writing drops what the
server owns (uid, creationTimestamp, generation, status).

resourceVersion: Kubernetes documents it as opaque; meshlet assumes what every
etcd-backed API server sends, the decimal etcd revision, and compares versions
as integers across kinds (a watch resumes from the largest one seen). A
non-numeric version makes the object untranslatable.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from meshlet.controller.model import ConversionError, Pod, Registry, Resource, to_obj
from meshlet.controller.model.convert import yaml_names
from meshlet.controller.model.registry import KindInfo
from meshlet.controller.store.kube.podstatus import pod_status_from_kube, pod_status_to_kube

_META_KEYS = ("name", "namespace", "labels", "annotations", "uid", "creationTimestamp", "generation")
_SERVER_OWNED = ("uid", "creationTimestamp", "generation", "resourceVersion")


class Untranslatable(ValueError):
    """One object read from the API server does not fit the model; `name` says which one."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


def object_name(info: KindInfo, data: Any) -> str:
    """`pod ns/name` (or `namespace name`) for messages, from whatever `data` holds."""
    meta = data.get("metadata") if isinstance(data, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name") or "<no name>"
    ns = meta.get("namespace")
    return f"{info.display} {ns}/{name}" if ns else f"{info.display} {name}"


def parse_rv(value: Any) -> int:
    """An etcd revision from a resourceVersion string; ValueError if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ValueError(f"resourceVersion {value!r} is not a decimal etcd revision")


def from_kube(registry: Registry, info: KindInfo, data: Any) -> Resource:
    """The typed resource of one API object (a list item or a watch event's object)."""
    if not isinstance(data, Mapping):
        raise Untranslatable(f"{info.display} <unnamed>", "not a JSON object")
    name = object_name(info, data)
    meta_in = data.get("metadata")
    if not isinstance(meta_in, Mapping):
        raise Untranslatable(name, "no metadata")
    meta: dict[str, Any] = {key: meta_in[key] for key in _META_KEYS if meta_in.get(key) is not None}
    try:
        meta["resourceVersion"] = parse_rv(meta_in.get("resourceVersion", "0"))
    except ValueError as e:
        raise Untranslatable(name, str(e)) from None
    obj = {key: value for key, value in data.items() if key not in ("apiVersion", "kind", "metadata")}
    api_version = data.get("apiVersion")
    obj["apiVersion"] = api_version if api_version in info.api_versions else info.api_version
    obj["kind"] = info.kind
    obj["metadata"] = meta
    if info.cls is Pod:
        obj["status"] = pod_status_from_kube(obj.get("status"))
    try:
        return registry.decode(obj, strict=False)
    except ConversionError as e:
        raise Untranslatable(name, f"does not fit meshlet's model: {e}") from None


def to_kube(resource: Resource, *, keep_resource_version: bool = True) -> dict[str, Any]:
    """The JSON body to write `resource` (create or server-side apply): no server-owned fields, no status.

    A non-zero resource_version is sent (as a string) when `keep_resource_version`, so the server
    refuses the write with 409 Conflict if the object changed meanwhile.
    """
    obj = to_obj(resource)
    obj.pop("status", None)
    meta = dict(obj.get("metadata") or {})
    for key in _SERVER_OWNED:
        meta.pop(key, None)
    if keep_resource_version and resource.metadata.resource_version:
        meta["resourceVersion"] = str(resource.metadata.resource_version)
    obj["metadata"] = meta
    return obj


def status_to_kube(resource: Resource, current: Mapping[str, Any]) -> dict[str, Any]:
    """The body of a PUT to the status subresource: the object as read (`current`) with the model's status.

    Status fields the model does not know are kept as they are on the server; the resourceVersion is
    the model's when set (optimistic concurrency), else the one read.
    """
    body = dict(current)
    meta = dict(body.get("metadata") or {})
    if resource.metadata.resource_version:
        meta["resourceVersion"] = str(resource.metadata.resource_version)
    body["metadata"] = meta
    old = current.get("status")
    if isinstance(resource, Pod):
        images = {c.name: c.image or "" for c in (*resource.spec.containers, *resource.spec.init_containers)}
        body["status"] = (pod_status_to_kube(resource.status, old, images)
                          if resource.status is not None else {})
        return body
    status = resource.status
    if status is None:
        body["status"] = {}
    elif isinstance(old, Mapping) and _is_dataclass_instance(status):
        merged = {k: v for k, v in old.items() if k not in set(yaml_names(type(status)))}
        merged.update(to_obj(status))
        body["status"] = merged
    else:
        body["status"] = to_obj(status)
    return body


def _is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)
