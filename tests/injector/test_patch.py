"""patch.py and overrides.py: the injection JSONPatch, applied with the independent `jsonpatch` library."""
from __future__ import annotations

import copy
import json

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from meshlet.injector.config import ConfigError, InjectorConfig, Resources
from meshlet.injector.overrides import OverrideError
from meshlet.injector.patch import PodError, escape, json_patch, plan

CFG = InjectorConfig(proxy_image="meshlet/meshlet:test", version="9.9.9")


def pod(annotations=None, labels=None, **spec):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web-1", "namespace": "demo", "labels": labels or {"app": "web"}},
         "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}], **spec}}
    if annotations is not None:
        p["metadata"]["annotations"] = annotations
    return p


def inject(p, cfg=CFG):
    ops, reason = json_patch(p, cfg)
    assert reason == "injected", reason
    return jsonpatch.apply_patch(copy.deepcopy(p), ops)


def by_name(containers):
    return {c["name"]: c for c in containers}


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_native_sidecar_layout_env_ports_volumes():
    out = inject(pod())
    spec = out["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["meshlet-init", "meshlet-proxy"]
    assert [c["name"] for c in spec["containers"]] == ["web"]
    proxy = spec["initContainers"][1]
    assert proxy["restartPolicy"] == "Always"
    assert proxy["image"] == "meshlet/meshlet:test"
    assert proxy["command"] == ["python", "-m", "meshlet.proxy"]
    assert {p["name"]: p["containerPort"] for p in proxy["ports"]} == {
        "mlt-outbound": 15001, "mlt-inbound": 15006, "mlt-admin": 15000, "mlt-metrics": 15090, "mlt-health": 15021}
    assert all(len(p["name"]) <= 15 for p in proxy["ports"])
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert proxy["securityContext"]["runAsUser"] == 1337 and proxy["securityContext"]["runAsGroup"] == 1337
    env = env_of(proxy)
    assert env["MESHLET_PROXY_POD"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}
    assert env["MESHLET_PROXY_NAMESPACE"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["MESHLET_PROXY_POD_IP"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["MESHLET_PROXY_SERVICE_ACCOUNT"]["fieldRef"]["fieldPath"] == "spec.serviceAccountName"
    assert env["MESHLET_PROXY_IDENTITY"] == \
        "spiffe://cluster.local/ns/$(MESHLET_PROXY_NAMESPACE)/sa/$(MESHLET_PROXY_SERVICE_ACCOUNT)"
    assert env["MESHLET_PROXY_DESTINATION_ADDR"] == "meshlet-destination.meshlet.svc.cluster.local:8086"
    assert env["MESHLET_PROXY_IDENTITY_ADDR"] == "meshlet-identity.meshlet.svc.cluster.local:8080"
    assert env["MESHLET_PROXY_IDENTITY_SERVER_NAME"] == "meshlet-identity.meshlet.svc"
    assert env["MESHLET_PROXY_TOKEN_FILE"] == "/var/run/secrets/tokens/meshlet-identity-token"
    assert env["MESHLET_PROXY_TRUST_ANCHORS"] == "/var/run/meshlet/identity/trust-roots/ca-bundle.crt"
    assert json.loads(env["MESHLET_PROXY_POD_LABELS"]) == {"app": "web"}
    assert "MESHLET_PROXY_CONCURRENCY" not in env
    names_in_order = [e["name"] for e in proxy["env"]]
    assert len(names_in_order) == len(set(names_in_order)), "each variable once"
    # dependent env vars must be defined before MESHLET_PROXY_IDENTITY uses them
    names = [e["name"] for e in proxy["env"]]
    assert names.index("MESHLET_PROXY_NAMESPACE") < names.index("MESHLET_PROXY_IDENTITY")
    assert names.index("MESHLET_PROXY_SERVICE_ACCOUNT") < names.index("MESHLET_PROXY_IDENTITY")
    mounts = {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}
    vols = by_name(spec["volumes"])
    assert vols["meshlet-identity-token"]["projected"]["sources"][0]["serviceAccountToken"] == {
        "audience": "identity.meshlet.io", "expirationSeconds": 3600, "path": "meshlet-identity-token"}
    assert mounts["meshlet-identity-token"] == "/var/run/secrets/tokens"
    assert vols["meshlet-trust-roots"]["configMap"]["name"] == "meshlet-identity-trust-roots"
    init = spec["initContainers"][0]
    assert init["command"][:3] == ["python", "-m", "meshlet.proxy.init"]
    assert init["command"][3:] == ["--proxy-gid", "1337"]
    assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN", "NET_RAW"]
    assert init["securityContext"]["runAsUser"] == 0
    notes = out["metadata"]["annotations"]
    assert notes["meshlet.io/proxy-version"] == "9.9.9"
    assert json.loads(notes["meshlet.io/inject-status"])["initContainers"] == ["meshlet-init", "meshlet-proxy"]
    assert notes["kubectl.kubernetes.io/default-container"] == "web"


def test_regular_container_mode_keeps_pod_init_containers_first():
    cfg = InjectorConfig(proxy_image="img", native_sidecar=False)
    p = pod(initContainers=[{"name": "migrate", "image": "m"}])
    out = inject(p, cfg)
    assert [c["name"] for c in out["spec"]["initContainers"]] == ["migrate", "meshlet-init"]
    assert [c["name"] for c in out["spec"]["containers"]] == ["meshlet-proxy", "web"]
    assert "restartPolicy" not in out["spec"]["containers"][0]
    assert "startupProbe" not in out["spec"]["containers"][0]


def test_native_mode_goes_before_existing_init_containers_and_keeps_volumes():
    p = pod(initContainers=[{"name": "migrate", "image": "m"}], volumes=[{"name": "data", "emptyDir": {}}])
    out = inject(p)
    assert [c["name"] for c in out["spec"]["initContainers"]] == ["meshlet-init", "meshlet-proxy", "migrate"]
    assert [v["name"] for v in out["spec"]["volumes"]] == ["data", "meshlet-identity-token", "meshlet-trust-roots"]


def test_annotation_keys_are_json_pointer_escaped():
    assert escape("meshlet.io/proxy-version") == "meshlet.io~1proxy-version"
    assert escape("a~b/c") == "a~0b~1c"
    p = pod(annotations={"existing/key": "v"})
    ops, _ = json_patch(p, CFG)
    paths = [o["path"] for o in ops if o["path"].startswith("/metadata/annotations/")]
    assert "/metadata/annotations/meshlet.io~1proxy-version" in paths
    out = jsonpatch.apply_patch(p, ops)
    assert out["metadata"]["annotations"]["existing/key"] == "v"
    assert out["metadata"]["annotations"]["meshlet.io/proxy-version"] == "9.9.9"


def test_second_injection_is_a_noop():
    out = inject(pod())
    assert json_patch(out, CFG) == ([], "already injected")
    # a pod someone wrote with our container name counts as injected too
    p = pod()
    p["spec"]["containers"].append({"name": "meshlet-proxy", "image": "x"})
    assert json_patch(p, CFG)[0] == []


def test_pods_of_another_mesh_are_skipped():
    p = pod()
    p["spec"]["initContainers"] = [{"name": "istio-proxy", "image": "istio/proxyv2", "restartPolicy": "Always"}]
    ops, reason = json_patch(p, CFG)
    assert ops == [] and "istio-proxy" in reason


def test_host_network_pods_are_skipped():
    ops, reason = json_patch(pod(hostNetwork=True), CFG)
    assert ops == [] and "host network" in reason


def test_capture_overrides_become_init_arguments():
    out = inject(pod(annotations={
        "traffic.sidecar.istio.io/excludeInboundPorts": "22, 8080",
        "config.linkerd.io/skip-inbound-ports": "8080,9000",
        "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32",
        "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8,172.16.0.0/12",
    }))
    init = by_name(out["spec"]["initContainers"])["meshlet-init"]
    assert init["command"][3:] == [
        "--proxy-gid", "1337", "--exclude-inbound-ports", "22,8080,9000", "--exclude-outbound-ports", "5432",
        "--exclude-outbound-cidrs", "169.254.169.254/32", "--include-outbound-cidrs", "10.0.0.0/8,172.16.0.0/12"]


def test_include_star_means_everything_and_empty_means_nothing():
    star = plan(pod(annotations={"traffic.sidecar.istio.io/includeOutboundIPRanges": "*"}), CFG)
    assert "--include-outbound-cidrs" not in star.init["command"]
    none = plan(pod(annotations={"traffic.sidecar.istio.io/includeOutboundIPRanges": ""}), CFG)
    cmd = none.init["command"]
    assert cmd[cmd.index("--include-outbound-cidrs") + 1] == ""


def test_resource_and_concurrency_overrides_with_precedence():
    out = inject(pod(annotations={
        "sidecar.istio.io/proxyCPU": "250m", "config.meshlet.io/proxy-cpu-request": "300m",
        "sidecar.istio.io/proxyMemory": "128Mi", "sidecar.istio.io/proxyCPULimit": "1",
        "config.linkerd.io/proxy-memory-limit": "256Mi",
        "proxy.istio.io/config": "concurrency: 2\n",
        "sidecar.istio.io/logLevel": "debug",
    }))
    proxy = by_name(out["spec"]["initContainers"])["meshlet-proxy"]
    assert proxy["resources"] == {"requests": {"cpu": "300m", "memory": "128Mi"},
                                  "limits": {"cpu": "1", "memory": "256Mi"}}
    env = env_of(proxy)
    assert env["MESHLET_PROXY_CONCURRENCY"] == "2"
    assert env["MESHLET_PROXY_LOG_LEVEL"] == "debug"


def test_native_sidecar_annotation_and_image_override():
    out = inject(pod(annotations={"sidecar.istio.io/nativeSidecar": "false",
                                  "sidecar.istio.io/proxyImage": "reg/meshlet:dev"}))
    assert out["spec"]["containers"][0]["name"] == "meshlet-proxy"
    assert out["spec"]["containers"][0]["image"] == "reg/meshlet:dev"


@pytest.mark.parametrize("annotations, named", [
    ({"sidecar.istio.io/proxyCPU": "lots"}, "sidecar.istio.io/proxyCPU"),
    ({"traffic.sidecar.istio.io/excludeInboundPorts": "80,http"}, "traffic.sidecar.istio.io/excludeInboundPorts"),
    ({"config.linkerd.io/skip-outbound-ports": "70000"}, "config.linkerd.io/skip-outbound-ports"),
    ({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/33"}, "excludeOutboundIPRanges"),
    ({"proxy.istio.io/config": "concurrency: -1"}, "proxy.istio.io/config"),
    ({"sidecar.istio.io/nativeSidecar": "maybe"}, "sidecar.istio.io/nativeSidecar"),
    ({"sidecar.istio.io/logLevel": "loud"}, "sidecar.istio.io/logLevel"),
])
def test_bad_overrides_name_the_annotation(annotations, named):
    with pytest.raises(OverrideError, match=named.replace(".", r"\.")):
        json_patch(pod(annotations=annotations), CFG)


def test_malformed_pods_are_named_errors():
    with pytest.raises(PodError, match="spec.containers"):
        json_patch({"metadata": {}, "spec": {"containers": "web"}}, CFG)
    with pytest.raises(PodError, match="metadata.annotations"):
        json_patch({"metadata": {"annotations": ["x"]}, "spec": {"containers": []}}, CFG)


def test_pod_without_annotations_or_volumes_or_metadata():
    out = inject({"spec": {"containers": [{"name": "a", "image": "b"}]}})
    assert "meshlet.io/inject-status" in inject({"metadata": None, "spec": {"containers": []}})["metadata"]["annotations"]
    assert "meshlet.io/inject-status" in out["metadata"]["annotations"]
    assert len(out["spec"]["volumes"]) == 2


def test_config_validation():
    with pytest.raises(ConfigError, match="cpu_request"):
        Resources(cpu_request="fast")
    with pytest.raises(ConfigError, match="pull policy"):
        InjectorConfig(image_pull_policy="Sometimes")
    with pytest.raises(ConfigError, match="proxy_uid"):
        InjectorConfig(proxy_uid=0)
    cfg = InjectorConfig(control_plane_namespace="mesh", cluster_domain="k8s.example", identity_addr="id:1")
    assert cfg.destination_address == "meshlet-destination.mesh.svc.k8s.example:8086"
    assert cfg.identity_address == "id:1"
    assert cfg.identity_tls_name == "meshlet-identity.mesh.svc"
    plain = plan(pod(), InjectorConfig(identity_server_name=""))
    assert "MESHLET_PROXY_IDENTITY_SERVER_NAME" not in env_of(plain.proxy)
    named = plan(pod(), InjectorConfig(identity_server_name="id.example"))
    assert [e["value"] for e in named.proxy["env"] if e["name"] == "MESHLET_PROXY_IDENTITY_SERVER_NAME"] == ["id.example"]


def test_pod_without_spec_is_a_named_error():
    with pytest.raises(PodError, match="no spec"):
        json_patch({"metadata": {"name": "x"}}, CFG)


KEYS = st.text(alphabet="ab~/.-_", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(KEYS, st.text(max_size=5), max_size=5))
def test_any_existing_annotations_survive_and_ours_are_added(existing):
    existing = {k: v for k, v in existing.items() if not k.startswith(("meshlet.io/", "kubectl.kubernetes.io/"))
                and k not in ("sidecar.istio.io/inject", "proxy.istio.io/config")}
    p = pod(annotations=existing)
    out = jsonpatch.apply_patch(copy.deepcopy(p), json_patch(p, CFG)[0])
    notes = out["metadata"]["annotations"]
    assert {k: notes[k] for k in existing} == existing
    assert notes["meshlet.io/proxy-version"] == "9.9.9" and "meshlet.io/inject-status" in notes


def test_namespace_config_annotations_are_inherited_unless_the_pod_sets_them():
    ns = {"config.meshlet.io/proxy-cpu-request": "120m", "config.linkerd.io/skip-inbound-ports": "9100",
          "sidecar.istio.io/proxyMemory": "1Gi", "unrelated/key": "x"}
    p = plan(pod(annotations={"config.meshlet.io/proxy-cpu-request": "300m"}), CFG, ns)
    assert p.proxy["resources"]["requests"] == {"cpu": "300m", "memory": "64Mi"}  # Istio keys are per pod
    assert "9100" in p.init["command"]
    p = plan(pod(), CFG, ns)
    assert p.proxy["resources"]["requests"]["cpu"] == "120m"
    # inherited values are not copied onto the pod
    out = inject(pod(), CFG)
    assert "config.meshlet.io/proxy-cpu-request" not in out["metadata"]["annotations"]
    with pytest.raises(OverrideError, match="config.meshlet.io/proxy-cpu-request"):
        plan(pod(), CFG, {"config.meshlet.io/proxy-cpu-request": "lots"})
