"""review.py: AdmissionReview parsing, the admission decision and the response (pure)."""
from __future__ import annotations

import base64
import json

import jsonpatch
import pytest
from meshlet.injector.config import InjectorConfig
from meshlet.injector.review import (
    Outcome,
    ReviewError,
    admit,
    parse_review,
    review_response,
)

CFG = InjectorConfig(proxy_image="img:1")


def review(obj=None, *, kind="Pod", operation="CREATE", namespace="demo", uid="u-1", **extra):
    req = {"uid": uid, "kind": {"group": "", "version": "v1", "kind": kind}, "operation": operation,
           "namespace": namespace, "object": obj if obj is not None else pod(), **extra}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}).encode()


def pod(labels=None, annotations=None):
    return {"metadata": {"generateName": "web-", "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}


@pytest.mark.parametrize("body, message", [
    (b"{not json", "not JSON"),
    (b"[]", "JSON object"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}).encode(), "admissionReviewVersions"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}).encode(), "kind must be AdmissionReview"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "request must be"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"kind": {"kind": "Pod"}}}).encode(), "request.uid"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"uid": "x", "kind": "Pod"}}).encode(), "request.kind"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                 "request": {"uid": "x", "kind": {"kind": "Pod"}, "object": "pod"}}).encode(), "request.object"),
])
def test_malformed_reviews_say_what_is_wrong(body, message):
    with pytest.raises(ReviewError, match=message):
        parse_review(body)


@pytest.mark.parametrize("ns_labels", [{"istio-injection": "enabled"}, {"meshlet.io/inject": "enabled"}])
def test_enabled_namespace_injects_and_the_patch_applies(ns_labels):
    req = parse_review(review())
    outcome = admit(req, ns_labels, CFG)
    assert outcome.result == "injected"
    answer = review_response(req.uid, outcome)
    resp = answer["response"]
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert resp["uid"] == "u-1" and resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(pod(), json.loads(base64.b64decode(resp["patch"])))
    assert "meshlet-proxy" in [c["name"] for c in patched["spec"]["initContainers"]]


@pytest.mark.parametrize("ns_labels, pod_labels, annotations, result", [
    ({}, {}, {}, "skipped"),
    ({"istio-injection": "enabled"}, {}, {"sidecar.istio.io/inject": "false"}, "skipped"),
    ({"istio-injection": "enabled"}, {"sidecar.istio.io/inject": "false"}, {}, "skipped"),
    ({}, {"sidecar.istio.io/inject": "true"}, {}, "injected"),
    ({"istio-injection": "disabled"}, {"sidecar.istio.io/inject": "true"}, {}, "skipped"),
])
def test_istio_precedence(ns_labels, pod_labels, annotations, result):
    outcome = admit(parse_review(review(pod(pod_labels, annotations))), ns_labels, CFG)
    assert outcome.result == result
    resp = review_response("u", outcome)["response"]
    assert resp["allowed"] is True
    assert ("patch" in resp) == (result == "injected")


def test_pod_level_errors_deny_with_the_annotation_named():
    outcome = admit(parse_review(review(pod(annotations={"sidecar.istio.io/proxyCPU": "lots"}))),
                    {"istio-injection": "enabled"}, CFG)
    resp = review_response("u-9", outcome)["response"]
    assert resp["allowed"] is False and resp["uid"] == "u-9"
    assert resp["status"]["code"] == 400 and "sidecar.istio.io/proxyCPU" in resp["status"]["message"]
    bad_label = admit(parse_review(review(pod({"sidecar.istio.io/inject": "yes"}))), {}, CFG)
    assert bad_label.result == "denied" and "sidecar.istio.io/inject" in bad_label.reason


def test_a_bad_namespace_label_does_not_block_pods():
    outcome = admit(parse_review(review()), {"istio-injection": "on"}, CFG)
    assert outcome.result == "skipped" and "istio-injection" in outcome.reason


def test_not_a_pod_creation_is_skipped():
    assert admit(parse_review(review(kind="Service")), {"istio-injection": "enabled"}, CFG).result == "skipped"
    assert admit(parse_review(review(operation="UPDATE")), {"istio-injection": "enabled"}, CFG).result == "skipped"


def test_internal_errors_are_allowed_with_a_warning():
    resp = review_response("u", Outcome("error", "KubeError: boom"))["response"]
    assert resp["allowed"] is True and "patch" not in resp and "boom" in resp["warnings"][0]
