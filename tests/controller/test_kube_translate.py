"""The Kubernetes store's pure parts: translation API object <-> model, REST paths, new kinds."""
from __future__ import annotations

import base64

import pytest
from meshlet.controller.model import DEFAULT_REGISTRY, ConversionError, Deployment, ObjectMeta, Pod, to_obj
from meshlet.controller.model.core import ContainerStatus, DeploymentStatus, PodStatus
from meshlet.controller.model.kube_core import EndpointSlice, Secret, secret_from_bytes
from meshlet.controller.store.kube import KubeResource, Untranslatable, from_kube, status_to_kube, to_kube
from meshlet.controller.store.kube.translate import parse_rv

R = DEFAULT_REGISTRY

# a Pod as a real API server returns it in a list (no apiVersion/kind on items), trimmed
CLUSTER_POD = {
    "metadata": {
        "name": "web-7d4b9", "namespace": "shop", "uid": "0b6f3c1e", "resourceVersion": "48213",
        "generation": 1, "creationTimestamp": "2026-11-25T10:00:00Z",
        "labels": {"app": "web", "pod-template-hash": "7d4b9"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9", "uid": "x"}],
        "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:x": {}}}],
    },
    "spec": {
        "containers": [{
            "name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent", "resources": {"requests": {"cpu": "100m"}},
        }],
        "initContainers": [{"name": "meshlet-proxy", "image": "meshlet/meshlet:0.1.0", "restartPolicy": "Always"}],
        "serviceAccountName": "web", "nodeName": "node-1", "dnsPolicy": "ClusterFirst",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}],
        "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
    },
    "status": {
        "phase": "Running", "hostIP": "10.0.0.5", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}],
        "qosClass": "Burstable", "startTime": "2026-11-25T10:00:01Z",
        "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"},
                       {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "web", "ready": True, "restartCount": 2, "image": "nginx:1.27",
                               "imageID": "docker.io/nginx@sha256:ab", "started": True,
                               "state": {"running": {"startedAt": "2026-11-25T10:00:02Z"}},
                               "lastState": {"terminated": {"exitCode": 1}}}],
    },
}


def test_a_cluster_pod_reads_into_the_model_and_ignores_what_it_does_not_know() -> None:
    pod = from_kube(R, R.for_kind("Pod"), CLUSTER_POD)
    assert isinstance(pod, Pod)
    assert pod.metadata.resource_version == 48213
    assert pod.metadata.namespace == "shop" and pod.metadata.uid == "0b6f3c1e"
    assert pod.spec.service_account_name == "web" and pod.spec.node_name == "node-1"
    assert pod.spec.containers[0].resources.requests == {"cpu": "100m"}
    assert pod.status == PodStatus(phase="Running", pod_ip="10.244.1.7", ready=True,
                                   container_statuses=(ContainerStatus("web", True, 2, "running"),),
                                   start_time="2026-11-25T10:00:01Z")


def test_a_pod_without_status_or_not_ready() -> None:
    data = {**CLUSTER_POD, "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}}
    pod = from_kube(R, R.for_kind("Pod"), data)
    assert pod.status.ready is False and pod.status.pod_ip is None
    no_status = {k: v for k, v in CLUSTER_POD.items() if k != "status"}
    assert from_kube(R, R.for_kind("Pod"), no_status).status is None


def test_an_odd_object_is_untranslatable_and_named() -> None:
    odd = {**CLUSTER_POD, "spec": {"containers": "nginx"}}
    with pytest.raises(Untranslatable) as e:
        from_kube(R, R.for_kind("Pod"), odd)
    assert e.value.name == "pod shop/web-7d4b9"
    assert "spec.containers" in e.value.reason


@pytest.mark.parametrize("rv", ["abc", "", "12a", None])
def test_a_non_numeric_resource_version_is_untranslatable(rv: object) -> None:
    data = {"metadata": {"name": "x", "resourceVersion": rv}}
    with pytest.raises(Untranslatable, match="resourceVersion"):
        from_kube(R, R.for_kind("Namespace"), data)


def test_parse_rv() -> None:
    assert parse_rv("0") == 0 and parse_rv("123456") == 123456 and parse_rv(7) == 7
    with pytest.raises(ValueError):
        parse_rv("-1")


def test_crd_kinds_accept_every_served_version_and_keep_the_one_given() -> None:
    data = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "r", "namespace": "shop", "resourceVersion": "9"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}}
    vs = from_kube(R, R.for_kind("VirtualService"), data)
    assert vs.metadata.resource_version == 9 and vs.spec.hosts == ("reviews",)


def test_to_kube_drops_server_owned_fields_and_status() -> None:
    pod = from_kube(R, R.for_kind("Pod"), CLUSTER_POD)
    body = to_kube(pod)
    assert body["apiVersion"] == "v1" and body["kind"] == "Pod"
    assert "status" not in body
    assert body["metadata"] == {"name": "web-7d4b9", "namespace": "shop",
                                "labels": {"app": "web", "pod-template-hash": "7d4b9"}, "resourceVersion": "48213"}
    assert "resourceVersion" not in to_kube(pod, keep_resource_version=False)["metadata"]
    fresh = Pod(metadata=ObjectMeta(name="p", namespace="shop"))
    assert "resourceVersion" not in to_kube(fresh)["metadata"]


def test_pod_status_written_over_the_servers_keeps_what_the_model_does_not_know() -> None:
    pod = from_kube(R, R.for_kind("Pod"), {**CLUSTER_POD, "status": None})
    pod = pod.with_status(PodStatus(phase="Running", pod_ip="10.244.1.9", ready=False,
                                    container_statuses=(ContainerStatus("web", False, 3, "waiting"),)))
    body = status_to_kube(pod, CLUSTER_POD)
    status = body["status"]
    assert status["hostIP"] == "10.0.0.5" and status["qosClass"] == "Burstable"
    assert status["podIP"] == "10.244.1.9" and status["podIPs"] == [{"ip": "10.244.1.9"}]
    assert "startTime" not in status  # the model's status has none: replaced, not merged
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Initialized": "True", "Ready": "False", "PodScheduled": "True"}
    (cs,) = status["containerStatuses"]
    assert cs["state"] == {"waiting": {}} and cs["restartCount"] == 3 and cs["imageID"] == "docker.io/nginx@sha256:ab"
    assert body["metadata"]["resourceVersion"] == "48213"
    # and it reads back as the model wrote it
    again = from_kube(R, R.for_kind("Pod"), body)
    assert again.status == pod.status


def test_pod_status_on_a_pod_that_had_none() -> None:
    raw = {**CLUSTER_POD, "status": {"phase": "Pending", "qosClass": "BestEffort"}}
    pod = from_kube(R, R.for_kind("Pod"), raw).with_meta(resource_version=0)
    pod = pod.with_status(PodStatus(phase="Running", pod_ip="10.1.1.1", ready=True,
                                    container_statuses=(ContainerStatus("web", True, 0, "running"),)))
    status = status_to_kube(pod, raw)["status"]
    (cs,) = status["containerStatuses"]
    assert cs["image"] == "nginx:1.27" and "startedAt" in cs["state"]["running"]
    assert [c["type"] for c in status["conditions"]] == ["Ready"]
    assert from_kube(R, R.for_kind("Pod"), {**raw, "status": status}).status.ready is True


def test_generic_status_merges_over_unknown_fields() -> None:
    raw = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "5"},
           "spec": {"selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w"}]}}},
           "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]}}
    d = from_kube(R, R.for_kind("Deployment"), raw)
    assert isinstance(d, Deployment)
    body = status_to_kube(d.with_status(DeploymentStatus(replicas=2, ready_replicas=2)), raw)
    assert body["status"]["conditions"] == raw["status"]["conditions"]
    assert body["status"]["replicas"] == 2 and body["status"]["readyReplicas"] == 2


def test_rest_paths() -> None:
    pods, ns, vs, dep = (KubeResource(R.for_kind(k)) for k in ("Pod", "Namespace", "VirtualService", "Deployment"))
    assert pods.collection() == "/api/v1/pods"
    assert pods.collection("shop") == "/api/v1/namespaces/shop/pods"
    assert pods.status("shop", "p") == "/api/v1/namespaces/shop/pods/p/status"
    assert ns.item(None, "shop") == "/api/v1/namespaces/shop" and ns.collection("ignored") == "/api/v1/namespaces"
    assert vs.item("shop", "r") == f"/apis/networking.istio.io/{vs.version}/namespaces/shop/virtualservices/r"
    assert dep.collection("a") == "/apis/apps/v1/namespaces/a/deployments"
    es = KubeResource(R.for_kind("endpointslices"))
    assert es.collection("a") == "/apis/discovery.k8s.io/v1/namespaces/a/endpointslices"
    with pytest.raises(ValueError):
        pods.item(None, "p")


# === the new kinds ===

def test_endpointslice_reads_from_a_cluster_and_validates_addresses() -> None:
    data = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-abc", "namespace": "shop", "resourceVersion": "77",
                         "labels": {"kubernetes.io/service-name": "web"}, "generateName": "web-"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.1.7"], "conditions": {"ready": True, "serving": True},
                           "targetRef": {"kind": "Pod", "namespace": "shop", "name": "web-7d4b9", "uid": "u"},
                           "nodeName": "node-1"},
                          {"addresses": ["10.244.1.8"], "conditions": {"ready": False}}],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    es = from_kube(R, R.for_kind("EndpointSlice"), data)
    assert isinstance(es, EndpointSlice) and es.service_name == "web"
    assert [e.ready for e in es.endpoints] == [True, False]
    assert es.endpoints[0].target_ref.name == "web-7d4b9"
    bad = {**to_obj(es), "endpoints": [{"addresses": ["fd00::1"]}]}
    with pytest.raises(ConversionError, match="not an IPv4 address"):
        R.decode(bad)
    assert R.decode(to_obj(es)) == es


def test_secret_data_is_base64_and_checked() -> None:
    s = secret_from_bytes("issuer", "meshlet", {"tls.crt": b"CERT", "tls.key": b"KEY"}, "kubernetes.io/tls")
    assert s.data["tls.crt"] == base64.b64encode(b"CERT").decode()
    assert s.value("tls.key") == b"KEY"
    assert R.decode(to_obj(s)) == s
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": {"a": "not base64!"}}
    with pytest.raises(ConversionError, match="not valid base64"):
        R.decode(doc)
    tls = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "type": "kubernetes.io/tls",
           "data": {"tls.crt": "QQ=="}}
    with pytest.raises(ConversionError, match="tls.key"):
        R.decode(tls)
    text = R.decode({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "stringData": {"k": "v"}})
    assert isinstance(text, Secret) and text.decoded() == {"k": b"v"}
