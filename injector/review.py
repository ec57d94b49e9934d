"""AdmissionReview v1 in and out, and the admission decision for one pod (pure, no sockets).

`parse_review(body)` → ReviewRequest or ReviewError (the webhook answers 400 with it);
`admit(request, namespace_labels, cfg, namespace_annotations)` → Outcome; `review_response(uid, outcome)` →
the AdmissionReview answer with the request's uid echoed.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshlet.injector.config import InjectorConfig
from meshlet.injector.decide import InjectionError, decide
from meshlet.injector.overrides import OverrideError
from meshlet.injector.patch import PodError, json_patch

API_VERSION = "admission.k8s.io/v1"


class ReviewError(ValueError):
    """The body is not an AdmissionReview v1 request (the message says what is wrong)."""


@dataclass(frozen=True)
class ReviewRequest:
    uid: str
    kind: str
    """The object's kind (request.kind.kind), e.g. "Pod"."""
    operation: str
    namespace: str
    obj: Mapping[str, Any]
    dry_run: bool = False


@dataclass(frozen=True)
class Outcome:
    result: str
    """injected | skipped | denied | error (the metric label)."""
    reason: str
    patch: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()
    """Shown to the client that created the pod (kubectl prints them)."""

    @property
    def allowed(self) -> bool:
        return self.result != "denied"


def parse_review(body: bytes) -> ReviewRequest:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ReviewError(f"body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise ReviewError("body must be a JSON object (an AdmissionReview)")
    if doc.get("kind") != "AdmissionReview":
        raise ReviewError(f"kind must be AdmissionReview, got {doc.get('kind')!r}")
    if doc.get("apiVersion") != API_VERSION:
        raise ReviewError(f"apiVersion must be {API_VERSION}, got {doc.get('apiVersion')!r} "
                          "(set admissionReviewVersions: [v1] on the webhook)")
    req = doc.get("request")
    if not isinstance(req, dict):
        raise ReviewError("request must be an object")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid must be a non-empty string")
    kind = req.get("kind")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise ReviewError("request.kind must be an object with a kind (group/version/kind)")
    obj = req.get("object")
    if obj is not None and not isinstance(obj, dict):
        raise ReviewError("request.object must be an object")
    namespace = req.get("namespace") or (obj or {}).get("metadata", {}).get("namespace") or ""
    if not isinstance(namespace, str):
        raise ReviewError("request.namespace must be a string")
    return ReviewRequest(uid=uid, kind=kind["kind"], operation=str(req.get("operation") or ""),
                         namespace=namespace, obj=obj or {}, dry_run=bool(req.get("dryRun")))


def _labels(obj: Mapping[str, Any], key: str) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    values = meta.get(key) if isinstance(meta, Mapping) else None
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, Mapping) else {}


def admit(req: ReviewRequest, namespace_labels: Mapping[str, str], cfg: InjectorConfig,
          namespace_annotations: Mapping[str, str] | None = None) -> Outcome:
    """Inject, skip (with why) or deny (a pod-level value we cannot use)."""
    if req.kind != "Pod" or req.operation != "CREATE":
        return Outcome("skipped", f"not a pod creation ({req.operation} {req.kind})")
    try:
        decision = decide(namespace_labels, {}, {})
    except InjectionError as e:
        # a namespace typo must not block every pod of the namespace: not injected, logged
        return Outcome("skipped", f"namespace {req.namespace}: {e}")
    try:
        decision = decide(namespace_labels, _labels(req.obj, "labels"), _labels(req.obj, "annotations"))
        if not decision.inject:
            return Outcome("skipped", decision.reason)
        ops, reason = json_patch(req.obj, cfg, namespace_annotations)
    except (InjectionError, OverrideError, PodError) as e:
        return Outcome("denied", f"meshlet injector: {e}")
    if not ops:
        return Outcome("skipped", reason)
    return Outcome("injected", decision.reason, tuple(ops))


def review_response(uid: str, outcome: Outcome) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": outcome.allowed}
    if outcome.patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(outcome.patch)).encode()).decode()
    if not outcome.allowed:
        response["status"] = {"code": 400, "reason": "BadRequest", "message": outcome.reason}
    elif outcome.result == "error":
        response["warnings"] = [f"meshlet injector: not injected: {outcome.reason}"]
    if outcome.warnings:
        response["warnings"] = [*response.get("warnings", []), *outcome.warnings]
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}
