"""The control-plane objects, built once for both `meshlet install` and the helm chart.

`control_plane(scope)` returns `{template file name: [objects]}`; every value
that depends on the install comes from the `Scope` (see `install_scope`), so
the same code yields concrete manifests or chart templates. Names follow the
shared Kubernetes layout: Deployments/Services/ServiceAccounts
`meshlet-destination`, `meshlet-identity`, `meshlet-injector`; the issuer
Secret `meshlet-identity-issuer`; the trust roots ConfigMap
`meshlet-identity-trust-roots`. Cluster-scoped objects carry the install
namespace in their name (`meshlet-<ns>-destination`), so two installs never
fight over them.
"""
from __future__ import annotations

from typing import Any

from .install_scope import Scope

PART_OF = "meshlet"
COMPONENT_LABEL = "meshlet.io/control-plane-component"
NAMESPACE_LABEL = "meshlet.io/control-plane-ns"
VERSION_LABEL = "meshlet.io/control-plane-version"
ISSUER_SECRET = "meshlet-identity-issuer"
TRUST_ROOTS_CONFIGMAP = "meshlet-identity-trust-roots"
TRUST_ROOTS_KEY = "ca-bundle.crt"
INJECTOR_TLS_SECRET = "meshlet-injector-k8s-tls"
WEBHOOK_NAME = "inject.meshlet.io"
COMPONENTS = ("destination", "identity", "injector")
PORTS = {
    "destination": (("grpc", 8086, 8086), ("admin", 9996, 9996)),
    "identity": (("grpc", 8080, 8080), ("admin", 9990, 9990)),
    "injector": (("https", 443, 8443), ("admin", 9995, 9995)),
}
"""component -> (port name, Service port, container port)."""
PROXY_UID = 1337
INJECTOR_MOUNT = "/var/run/meshlet/injector"


def webhook_config_name(scope: Scope) -> str:
    return scope.prefixed("meshlet-", "-proxy-injector")


def cluster_role_name(scope: Scope, component: str) -> str:
    return scope.prefixed("meshlet-", f"-{component}")


def control_plane(s: Scope) -> dict[str, list[dict[str, Any]]]:
    return {
        "identity.yaml": [*_component_base(s, "identity"), *_identity_secrets(s), _deployment(s, "identity")],
        "destination.yaml": [*_component_base(s, "destination"), _deployment(s, "destination")],
        "injector.yaml": [*_component_base(s, "injector"), _injector_secret(s), _deployment(s, "injector"),
                          _webhook(s)],
    }


def namespace_object(namespace: str, version: str) -> dict[str, Any]:
    """The control-plane Namespace (`meshlet install` emits it; `helm install --create-namespace` makes it)."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": PART_OF,
                                                       "meshlet.io/is-control-plane": "true",
                                                       VERSION_LABEL: version}}}


def _labels(s: Scope, component: str) -> dict[str, Any]:
    return {"app.kubernetes.io/name": f"meshlet-{component}", "app.kubernetes.io/part-of": PART_OF,
            COMPONENT_LABEL: component, NAMESPACE_LABEL: s.namespace(), VERSION_LABEL: s.version()}


def _meta(s: Scope, name: str, component: str, *, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = s.namespace()
    meta["labels"] = _labels(s, component)
    return meta


def _component_base(s: Scope, component: str) -> list[dict[str, Any]]:
    name = f"meshlet-{component}"
    role = cluster_role_name(s, component)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(s, name, component)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta(s, role, component, namespaced=False), "rules": _RULES[component]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(s, role, component, namespaced=False),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": s.namespace()}]},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(s, name, component),
         "spec": {"type": "ClusterIP", "selector": {COMPONENT_LABEL: component},
                  "ports": [{"name": p, "port": port, "targetPort": target, "protocol": "TCP"}
                            for p, port, target in PORTS[component]]}},
    ]


_READ = ["get", "list", "watch"]
_MESH_GROUPS = ["networking.istio.io", "security.istio.io", "telemetry.istio.io", "gateway.networking.k8s.io",
                "meshlet.io"]
_RULES: dict[str, list[dict[str, Any]]] = {
    "destination": [
        {"apiGroups": [""], "resources": ["namespaces", "services", "endpoints", "pods", "serviceaccounts"], "verbs": _READ},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": _READ},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": _READ},
        {"apiGroups": ["apps"], "resources": ["replicasets", "deployments"], "verbs": _READ},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": _READ},
        {"apiGroups": _MESH_GROUPS, "resources": ["*"], "verbs": _READ},
    ],
    "identity": [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [ISSUER_SECRET], "verbs": ["get", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ],
    "injector": [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
        # publishes the trust roots ConfigMap into each namespace it injects pods into
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create", "update"]},
        {"apiGroups": ["apps"], "resources": ["replicasets", "deployments"], "verbs": ["get"]},
    ],
}


def _identity_secrets(s: Scope) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
         "metadata": _meta(s, ISSUER_SECRET, "identity"),
         "data": {"tls.crt": s.text("identity.issuer.tls.crtPEM", b64=True),
                  "tls.key": s.text("identity.issuer.tls.keyPEM", b64=True),
                  "ca.crt": s.text("identity.trustAnchorsPEM", b64=True)}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(s, TRUST_ROOTS_CONFIGMAP, "identity"),
         "data": {TRUST_ROOTS_KEY: s.text("identity.trustAnchorsPEM")}},
    ]


def _injector_secret(s: Scope) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": _meta(s, INJECTOR_TLS_SECRET, "injector"),
            "data": {"tls.crt": s.text("injector.tls.crtPEM", b64=True),
                     "tls.key": s.text("injector.tls.keyPEM", b64=True),
                     "ca.crt": s.text("injector.tls.caPEM", b64=True)}}


def _args(s: Scope, component: str) -> list[Any]:
    grpc, admin = PORTS[component][0][2], PORTS[component][1][2]
    common = ["--admin-listen", f"0.0.0.0:{admin}", "--log-level", s.text("logLevel")]
    if component == "destination":
        return ["-m", "meshlet.destination", "--store", "kube", "--listen", f"0.0.0.0:{grpc}",
                "--trust-domain", s.text("trustDomain"), *common]
    if component == "identity":
        # the issuer comes from the Secret through the API (re-read for rotation), not a mounted file
        return ["-m", "meshlet.identity", "--store", "kube", "--listen", f"0.0.0.0:{grpc}",
                "--trust-domain", s.text("trustDomain"), "--namespace", s.namespace(),
                "--issuer-secret", ISSUER_SECRET, "--token-audience", s.text("identity.tokenAudience"), *common]
    return ["-m", "meshlet.injector", "--store", "kube", "--host", "0.0.0.0", "--port", str(grpc),
            "--admin-port", str(admin), "--namespace", s.namespace(),
            "--tls-cert", f"{INJECTOR_MOUNT}/tls.crt", "--tls-key", f"{INJECTOR_MOUNT}/tls.key",
            "--proxy-image", s.image(), "--image-pull-policy", s.text("image.pullPolicy"),
            "--native-sidecar", s.text("injector.nativeSidecar"), "--trust-domain", s.text("trustDomain"),
            "--log-level", s.text("logLevel")]


def _deployment(s: Scope, component: str) -> dict[str, Any]:
    name = f"meshlet-{component}"
    admin = PORTS[component][1][2]
    container: dict[str, Any] = {
        "name": component,
        "image": s.image(),
        "imagePullPolicy": s.text("image.pullPolicy"),
        "command": ["python"],
        "args": _args(s, component),
        "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "MESHLET_TRUST_DOMAIN", "value": s.text("trustDomain")},
                {"name": "MESHLET_PROXY_IMAGE", "value": s.image()}],
        "ports": [{"name": p, "containerPort": target, "protocol": "TCP"} for p, _, target in PORTS[component]],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": admin}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/ready", "port": admin}, "initialDelaySeconds": 30,
                          "periodSeconds": 10, "failureThreshold": 6},
        "resources": s.block(f"{component}.resources"),
        "securityContext": {"runAsUser": PROXY_UID, "runAsGroup": PROXY_UID, "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    # writable scratch space under a read-only root filesystem
    volumes: list[dict[str, Any]] = [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    mounts = [{"name": "state", "mountPath": "/var/lib/meshlet"}, {"name": "tmp", "mountPath": "/tmp"}]
    if component == "injector":
        volumes.append({"name": "tls", "secret": {"secretName": INJECTOR_TLS_SECRET, "defaultMode": 0o440}})
        mounts.append({"name": "tls", "mountPath": INJECTOR_MOUNT, "readOnly": True})
    container["volumeMounts"] = mounts
    pod_spec: dict[str, Any] = {"serviceAccountName": name, "containers": [container],
                                "securityContext": {"fsGroup": PROXY_UID, "seccompProfile": {"type": "RuntimeDefault"}}}
    pod_spec["volumes"] = volumes
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(s, name, component),
        "spec": {"replicas": s.number(f"{component}.replicas"),
                 "selector": {"matchLabels": {COMPONENT_LABEL: component}},
                 "template": {"metadata": {"labels": {**_labels(s, component), "meshlet.io/inject": "false"}},
                              "spec": pod_spec}},
    }


def _webhook(s: Scope) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": _meta(s, webhook_config_name(s), "injector", namespaced=False),
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "clientConfig": {"service": {"name": "meshlet-injector", "namespace": s.namespace(),
                                         "path": "/inject", "port": 443},
                             "caBundle": s.text("injector.tls.caPEM", b64=True)},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            # the control plane itself and kube-system are never injected
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [s.namespace(), "kube-system"]},
                {"key": "meshlet.io/inject", "operator": "NotIn", "values": ["disabled"]},
                {"key": "istio-injection", "operator": "NotIn", "values": ["disabled"]}]},
            # a pod that opts out by label is not even sent to the injector
            "objectSelector": {"matchExpressions": [
                {"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]},
                {"key": "meshlet.io/inject", "operator": "NotIn", "values": ["false", "disabled"]}]},
            "failurePolicy": s.text("injector.failurePolicy"),
            "timeoutSeconds": s.number("injector.timeoutSeconds"),
            # it writes the trust-roots ConfigMap copies, and skips that on dry runs
            "sideEffects": "NoneOnDryRun",
            "admissionReviewVersions": ["v1"],
            "reinvocationPolicy": "Never",
        }],
    }
