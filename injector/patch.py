"""The sidecar injection of one pod as an RFC 6902 JSONPatch (pure: dicts in, list of ops out).

`plan(pod, cfg)` decides what to add (or why nothing: already injected, host network),
`json_patch(pod, cfg)` turns it into ops against the pod as the API server holds it:

* the proxy `meshlet-proxy`: a native sidecar (initContainer with restartPolicy
  Always, right after `meshlet-init`, before the pod's own init containers, so
  they are meshed too) or, without native sidecars, the first regular container;
* `meshlet-init` (`python -m meshlet.proxy.init ...`, NET_ADMIN + NET_RAW, root):
  the local mode's capture rules in the pod's netns. With native sidecars it is
  the first initContainer; without, it is the last one, so the pod's own init
  containers run before capture (there is no proxy yet to take their traffic);
* volumes: the projected service-account token (audience identity.meshlet.io) and
  the trust-roots ConfigMap;
* annotations: `meshlet.io/proxy-version`, `meshlet.io/inject-status` (what was
  added: a pod carrying it is never injected twice) and kubectl's default container.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshlet.injector.config import (
    DEFAULT_CONTAINER_ANNOTATION,
    INIT_CONTAINER,
    PROXY_CONTAINER,
    STATUS_ANNOTATION,
    TOKEN_AUDIENCE,
    TOKEN_DIR,
    TOKEN_FILE,
    TOKEN_VOLUME,
    TRUST_ROOTS_CONFIGMAP,
    TRUST_ROOTS_DIR,
    TRUST_ROOTS_KEY,
    TRUST_ROOTS_VOLUME,
    VERSION_ANNOTATION,
    InjectorConfig,
)
from meshlet.injector.overrides import Overrides, inherit, overrides

OTHER_MESH_SIDECARS = frozenset({"istio-proxy", "linkerd-proxy"})
"""Two meshes' capture rules in one pod would fight over its traffic: such pods are skipped."""
Pod = Mapping[str, Any]
Op = dict[str, Any]


class PodError(ValueError):
    """The pod object is not shaped like a Pod (names the field)."""


@dataclass(frozen=True)
class Plan:
    """What injecting one pod adds (empty `skip` means inject)."""

    skip: str = ""
    proxy: dict[str, Any] | None = None
    init: dict[str, Any] | None = None
    volumes: tuple[dict[str, Any], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    native: bool = True


def escape(key: str) -> str:
    """One JSON-pointer reference token (RFC 6901): `~` → `~0`, `/` → `~1`."""
    return key.replace("~", "~0").replace("/", "~1")


def _mapping(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PodError(f"{where}{key} must be an object, got {type(value).__name__}")
    return value


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, Mapping) for c in value):
        raise PodError(f"{where}{key} must be a list of objects")
    return value


def already_injected(pod: Pod) -> bool:
    meta = _mapping(pod, "metadata", "")
    if STATUS_ANNOTATION in _mapping(meta, "annotations", "metadata."):
        return True
    spec = _mapping(pod, "spec", "")
    names = {c.get("name") for key in ("containers", "initContainers") for c in _list(spec, key, "spec.")}
    return PROXY_CONTAINER in names or INIT_CONTAINER in names


def _env(cfg: InjectorConfig, o: Overrides, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    def field(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}

    env = [
        field("MESHLET_PROXY_POD", "metadata.name"),
        field("MESHLET_PROXY_NAMESPACE", "metadata.namespace"),
        field("MESHLET_PROXY_POD_IP", "status.podIP"),
        field("MESHLET_PROXY_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        # $(VAR) expands the two variables above (Kubernetes' dependent environment variables)
        {"name": "MESHLET_PROXY_IDENTITY",
         "value": f"spiffe://{cfg.trust_domain}/ns/$(MESHLET_PROXY_NAMESPACE)/sa/$(MESHLET_PROXY_SERVICE_ACCOUNT)"},
        {"name": "MESHLET_PROXY_TOKEN_FILE", "value": f"{TOKEN_DIR}/{TOKEN_FILE}"},
        {"name": "MESHLET_PROXY_TRUST_ANCHORS", "value": f"{TRUST_ROOTS_DIR}/{TRUST_ROOTS_KEY}"},
        {"name": "MESHLET_PROXY_DESTINATION_ADDR", "value": cfg.destination_address},
        {"name": "MESHLET_PROXY_IDENTITY_ADDR", "value": cfg.identity_address},
        # identity serves TLS in Kubernetes mode with a certificate for its Service's .svc name
        {"name": "MESHLET_PROXY_IDENTITY_SERVER_NAME", "value": cfg.identity_tls_name},
        {"name": "MESHLET_PROXY_LOG_LEVEL", "value": o.log_level},
        {"name": "MESHLET_PROXY_POD_LABELS",
         "value": json.dumps({str(k): str(v) for k, v in sorted(labels.items())}, separators=(",", ":"))},
    ]
    if not cfg.identity_tls_name:
        env = [e for e in env if e["name"] != "MESHLET_PROXY_IDENTITY_SERVER_NAME"]
    if o.concurrency is not None:
        env.append({"name": "MESHLET_PROXY_CONCURRENCY", "value": str(o.concurrency)})
    return env


def proxy_container(cfg: InjectorConfig, o: Overrides, labels: Mapping[str, str]) -> dict[str, Any]:
    p = cfg.proxy_ports
    probe = {"httpGet": {"path": "/healthz/ready", "port": p.health}, "periodSeconds": 2,
             "timeoutSeconds": 3, "failureThreshold": 30}
    container: dict[str, Any] = {
        "name": PROXY_CONTAINER,
        "image": o.proxy_image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": ["python", "-m", "meshlet.proxy"],
        "env": _env(cfg, o, labels),
        "ports": [
            {"name": "mlt-outbound", "containerPort": p.outbound, "protocol": "TCP"},
            {"name": "mlt-inbound", "containerPort": p.inbound, "protocol": "TCP"},
            {"name": "mlt-admin", "containerPort": p.admin, "protocol": "TCP"},
            {"name": "mlt-metrics", "containerPort": p.metrics, "protocol": "TCP"},
            {"name": "mlt-health", "containerPort": p.health, "protocol": "TCP"},
        ],
        "readinessProbe": probe,
        "resources": o.resources.render(),
        "securityContext": {
            "runAsUser": cfg.proxy_uid, "runAsGroup": cfg.proxy_gid, "runAsNonRoot": True,
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": TRUST_ROOTS_VOLUME, "mountPath": TRUST_ROOTS_DIR, "readOnly": True},
        ],
    }
    if o.native_sidecar:
        container["restartPolicy"] = "Always"
        # the pod's next containers start once the proxy has its certificate (Istio's startup probe)
        container["startupProbe"] = {"httpGet": {"path": "/healthz/ready", "port": p.health},
                                     "periodSeconds": 1, "timeoutSeconds": 3, "failureThreshold": 600}
    return container


def init_container(cfg: InjectorConfig, o: Overrides) -> dict[str, Any]:
    return {
        "name": INIT_CONTAINER,
        "image": o.proxy_image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": ["python", "-m", "meshlet.proxy.init", *o.init_args(cfg.proxy_gid)],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "securityContext": {
            "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": False, "privileged": False,
            "allowPrivilegeEscalation": False,
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
        },
    }


def volumes(cfg: InjectorConfig) -> tuple[dict[str, Any], ...]:
    return (
        {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": TOKEN_AUDIENCE, "expirationSeconds": cfg.token_expiration_seconds, "path": TOKEN_FILE}}]}},
        {"name": TRUST_ROOTS_VOLUME, "configMap": {"name": TRUST_ROOTS_CONFIGMAP}},
    )


def plan(pod: Pod, cfg: InjectorConfig, namespace_annotations: Mapping[str, str] | None = None) -> Plan:
    """What to add to this pod, or why nothing (OverrideError for a bad annotation).

    `namespace_annotations`: the pod's namespace's, of which `config.meshlet.io/*` and
    `config.linkerd.io/*` apply unless the pod sets the same key."""
    if not isinstance(pod, Mapping):
        raise PodError("the pod must be an object")
    meta = _mapping(pod, "metadata", "")
    if not isinstance(pod.get("spec"), Mapping):
        raise PodError("the pod has no spec")
    spec = _mapping(pod, "spec", "")
    annotations = {str(k): str(v) for k, v in _mapping(meta, "annotations", "metadata.").items()}
    labels = {str(k): str(v) for k, v in _mapping(meta, "labels", "metadata.").items()}
    containers = _list(spec, "containers", "spec.")
    _list(spec, "initContainers", "spec.")
    _list(spec, "volumes", "spec.")
    if already_injected(pod):
        return Plan(skip="already injected")
    other = sorted({str(c.get("name")) for key in ("containers", "initContainers")
                    for c in _list(spec, key, "spec.")} & OTHER_MESH_SIDECARS)
    if other:
        return Plan(skip=f"already has another mesh's sidecar ({', '.join(other)})")
    if spec.get("hostNetwork") is True:
        return Plan(skip="host network (capture rules would change the node's network)")
    o = overrides(cfg, inherit(namespace_annotations or {}, annotations))
    status = {"initContainers": [INIT_CONTAINER] + ([PROXY_CONTAINER] if o.native_sidecar else []),
              "containers": [] if o.native_sidecar else [PROXY_CONTAINER],
              "volumes": [TOKEN_VOLUME, TRUST_ROOTS_VOLUME], "version": cfg.version}
    notes = [(VERSION_ANNOTATION, cfg.version), (STATUS_ANNOTATION, json.dumps(status, separators=(",", ":")))]
    if DEFAULT_CONTAINER_ANNOTATION not in annotations and containers and containers[0].get("name"):
        notes.append((DEFAULT_CONTAINER_ANNOTATION, str(containers[0]["name"])))
    return Plan(proxy=proxy_container(cfg, o, labels), init=init_container(cfg, o), volumes=volumes(cfg),
                annotations=tuple(notes), native=o.native_sidecar)


def ops(pod: Pod, p: Plan) -> list[Op]:
    """The JSONPatch of a plan against this pod (empty when the plan skips)."""
    if p.skip or p.proxy is None or p.init is None:
        return []
    meta = _mapping(pod, "metadata", "")
    spec = _mapping(pod, "spec", "")
    out: list[Op] = []
    inits = spec.get("initContainers")
    if p.native:
        if not inits:
            out.append({"op": "add", "path": "/spec/initContainers", "value": [p.init, p.proxy]})
        else:
            out.append({"op": "add", "path": "/spec/initContainers/0", "value": p.proxy})
            out.append({"op": "add", "path": "/spec/initContainers/0", "value": p.init})
    else:
        if not inits:
            out.append({"op": "add", "path": "/spec/initContainers", "value": [p.init]})
        else:
            out.append({"op": "add", "path": "/spec/initContainers/-", "value": p.init})
        if not spec.get("containers"):
            out.append({"op": "add", "path": "/spec/containers", "value": [p.proxy]})
        else:
            out.append({"op": "add", "path": "/spec/containers/0", "value": p.proxy})
    if not spec.get("volumes"):
        out.append({"op": "add", "path": "/spec/volumes", "value": list(p.volumes)})
    else:
        out += [{"op": "add", "path": "/spec/volumes/-", "value": v} for v in p.volumes]
    if pod.get("metadata") is None:
        out.append({"op": "add", "path": "/metadata", "value": {"annotations": dict(p.annotations)}})
    elif meta.get("annotations") is None:
        out.append({"op": "add", "path": "/metadata/annotations", "value": dict(p.annotations)})
    else:
        out += [{"op": "add", "path": f"/metadata/annotations/{escape(k)}", "value": v} for k, v in p.annotations]
    return out


def json_patch(pod: Pod, cfg: InjectorConfig,
               namespace_annotations: Mapping[str, str] | None = None) -> tuple[list[Op], str]:
    """(ops, reason): the patch injecting this pod (empty with the reason when skipped)."""
    p = plan(pod, cfg, namespace_annotations)
    if p.skip:
        return [], p.skip
    return ops(pod, p), "injected"
