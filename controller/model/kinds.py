"""Every kind meshlet knows. Adding a kind = its dataclasses + one line here."""
from __future__ import annotations

from meshlet.controller.model.core import (
    Deployment,
    Namespace,
    Pod,
    Service,
    ServiceAccount,
    WorkloadToken,
)
from meshlet.controller.model.gateway_api import HTTPRoute
from meshlet.controller.model.istio_destinationrule import DestinationRule
from meshlet.controller.model.istio_networking import (
    Gateway,
    ProxyConfig,
    ServiceEntry,
    Sidecar,
    WorkloadEntry,
)
from meshlet.controller.model.istio_security import (
    AuthorizationPolicy,
    PeerAuthentication,
    RequestAuthentication,
)
from meshlet.controller.model.istio_telemetry import Telemetry
from meshlet.controller.model.istio_virtualservice import VirtualService
from meshlet.controller.model.kube_core import EndpointSlice, Secret
from meshlet.controller.model.mesh import MeshConfig
from meshlet.controller.model.registry import KindInfo, Registry

_NET = ("networking.istio.io/v1beta1", "networking.istio.io/v1alpha3")
_SEC = ("security.istio.io/v1beta1",)

KINDS: tuple[KindInfo, ...] = (
    KindInfo(Namespace, "namespaces", ("ns",)),
    KindInfo(Service, "services", ("svc",)),
    KindInfo(ServiceAccount, "serviceaccounts", ("sa",)),
    KindInfo(Deployment, "deployments", ("deploy",)),
    KindInfo(Pod, "pods", ("po",)),
    KindInfo(EndpointSlice, "endpointslices", ()),
    KindInfo(Secret, "secrets", ()),
    KindInfo(WorkloadToken, "workloadtokens", ("wt",), internal=True),
    KindInfo(VirtualService, "virtualservices", ("vs",), _NET),
    KindInfo(DestinationRule, "destinationrules", ("dr",), _NET),
    KindInfo(ServiceEntry, "serviceentries", ("se",), _NET),
    KindInfo(Gateway, "gateways", ("gw",), _NET),
    KindInfo(Sidecar, "sidecars", (), _NET),
    KindInfo(WorkloadEntry, "workloadentries", ("we",), _NET),
    # Istio serves ProxyConfig at v1beta1 only; the seed writes v1alpha3
    KindInfo(ProxyConfig, "proxyconfigs", (), ("networking.istio.io/v1alpha3",)),
    KindInfo(PeerAuthentication, "peerauthentications", ("pa",), _SEC),
    KindInfo(AuthorizationPolicy, "authorizationpolicies", ("ap",), _SEC),
    KindInfo(RequestAuthentication, "requestauthentications", ("ra",), _SEC),
    KindInfo(Telemetry, "telemetries", (), ("telemetry.istio.io/v1alpha1",)),
    KindInfo(HTTPRoute, "httproutes", (), ("gateway.networking.k8s.io/v1beta1",)),
    KindInfo(MeshConfig, "meshconfigs", ()),
)

DEFAULT_REGISTRY = Registry(KINDS)
