"""Pod status between Kubernetes' shape and the model's (pure).

Kubernetes says a pod is ready with a `Ready` condition and gives each
container state as a one-key object (`{"running": {"startedAt": ...}}`); the
model keeps `ready: bool` and the state's name. Writing back merges into the
status read from the server, so fields the model does not know (hostIP,
qosClass, other conditions) survive.
"""
from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from meshlet.controller.model import to_obj
from meshlet.controller.model.core import PodStatus

_SCALARS = {"phase": "phase", "podIP": "pod_ip", "message": "message", "reason": "reason", "startTime": "start_time"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_status_from_kube(status: Any) -> dict[str, Any] | None:
    """The model's plain-data PodStatus from a Kubernetes pod status (None stays None)."""
    if not isinstance(status, Mapping):
        return None
    out: dict[str, Any] = {key: status[key] for key in _SCALARS if status.get(key) is not None}
    conditions = status.get("conditions") or []
    out["ready"] = any(isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
                       for c in conditions)
    statuses = []
    for cs in status.get("containerStatuses") or []:
        if not isinstance(cs, Mapping) or not isinstance(cs.get("name"), str):
            continue
        state = cs.get("state")
        entry: dict[str, Any] = {"name": cs["name"], "ready": bool(cs.get("ready")),
                                 "restartCount": cs.get("restartCount") or 0}
        if isinstance(state, Mapping) and state:
            entry["state"] = next(iter(state))
        statuses.append(entry)
    if statuses:
        out["containerStatuses"] = statuses
    return out


def pod_status_to_kube(status: PodStatus, current: Any, images: Mapping[str, str], now: str | None = None
                       ) -> dict[str, Any]:
    """A Kubernetes pod status: `current` (as read from the server) with the model's fields written over it.

    `images` maps container names to their images (Kubernetes requires one per container status).
    """
    now = now or _now()
    out: dict[str, Any] = dict(current) if isinstance(current, Mapping) else {}
    plain = to_obj(status)
    for key in _SCALARS:
        if key in plain:
            out[key] = plain[key]
        else:
            out.pop(key, None)
    if status.pod_ip:
        out["podIPs"] = [{"ip": status.pod_ip}]
    else:
        out.pop("podIPs", None)
    out["conditions"] = _with_ready(out.get("conditions"), status.ready, now)
    old_statuses = {cs.get("name"): cs for cs in out.get("containerStatuses") or [] if isinstance(cs, Mapping)}
    statuses = []
    for cs in status.container_statuses:
        old = dict(old_statuses.get(cs.name) or {})
        old_state = old.get("state") if isinstance(old.get("state"), Mapping) else {}
        old.update({"name": cs.name, "ready": cs.ready, "restartCount": cs.restart_count})
        old.setdefault("image", images.get(cs.name) or "unknown")
        old.setdefault("imageID", "")
        if cs.state:
            body = old_state.get(cs.state) if cs.state in old_state else {}
            if cs.state == "running" and not body:
                body = {"startedAt": now}
            old["state"] = {cs.state: body or {}}
        statuses.append(old)
    if statuses:
        out["containerStatuses"] = statuses
    else:
        out.pop("containerStatuses", None)
    return out


def _with_ready(conditions: Any, ready: bool, now: str) -> list[dict[str, Any]]:
    out = [dict(c) for c in conditions or [] if isinstance(c, Mapping)]
    value = "True" if ready else "False"
    for cond in out:
        if cond.get("type") == "Ready":
            if cond.get("status") != value:
                cond.update(status=value, lastTransitionTime=now)
            return out
    out.append({"type": "Ready", "status": value, "lastTransitionTime": now})
    return out
