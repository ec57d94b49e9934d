"""meshlet's resource model: typed kinds, the generic YAML converter, the registry, the loader.

Public API (import from here):
- kinds: Namespace, Service, ServiceAccount, Deployment, Pod, WorkloadToken and their
  spec/status dataclasses; ObjectMeta, Resource, LabelSelector, TemplateMeta
- converter: from_obj, to_obj, yfield, ConversionError, FieldIssue
- registry: DEFAULT_REGISTRY, Registry, KindInfo, UnknownKind
- loader: load_paths, load_text, ManifestError, ManifestProblem
- defaults: default_resource, DEFAULT_NAMESPACE
- Istio / Gateway API kinds (issue 3): VirtualService, DestinationRule, ServiceEntry, Gateway,
  Sidecar, WorkloadEntry, ProxyConfig (istio_virtualservice, istio_networking), PeerAuthentication,
  AuthorizationPolicy, RequestAuthentication (istio_security), Telemetry (istio_telemetry),
  HTTPRoute (gateway_api), MeshConfig (mesh); helpers parse_duration, fqdn (istio_common)
"""
from meshlet.controller.model.convert import ConversionError, FieldIssue, from_obj, to_obj, yfield
from meshlet.controller.model.core import (
    Container,
    ContainerPort,
    ContainerStatus,
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    EnvVar,
    Namespace,
    NamespaceSpec,
    Pod,
    PodSpec,
    PodStatus,
    PodTemplateSpec,
    ResourceRequirements,
    Service,
    ServiceAccount,
    ServicePort,
    ServiceSpec,
    WorkloadToken,
    WorkloadTokenSpec,
)
from meshlet.controller.model.defaults import DEFAULT_NAMESPACE, default_resource
from meshlet.controller.model.gateway_api import HTTPRoute
from meshlet.controller.model.istio_common import fqdn, parse_duration
from meshlet.controller.model.istio_networking import (
    DestinationRule,
    Gateway,
    ProxyConfig,
    ServiceEntry,
    Sidecar,
    WorkloadEntry,
)
from meshlet.controller.model.istio_security import AuthorizationPolicy, PeerAuthentication, RequestAuthentication
from meshlet.controller.model.istio_telemetry import Telemetry
from meshlet.controller.model.istio_virtualservice import VirtualService
from meshlet.controller.model.kinds import DEFAULT_REGISTRY
from meshlet.controller.model.mesh import MeshConfig
from meshlet.controller.model.loader import ManifestError, ManifestProblem, load_paths, load_text
from meshlet.controller.model.meta import LabelSelector, ObjectMeta, Resource, TemplateMeta
from meshlet.controller.model.registry import KindInfo, Registry, UnknownKind

__all__ = [
    "AuthorizationPolicy",
    "DestinationRule",
    "Gateway",
    "HTTPRoute",
    "MeshConfig",
    "PeerAuthentication",
    "ProxyConfig",
    "RequestAuthentication",
    "ServiceEntry",
    "Sidecar",
    "Telemetry",
    "VirtualService",
    "WorkloadEntry",
    "fqdn",
    "parse_duration",
    "DEFAULT_NAMESPACE",
    "DEFAULT_REGISTRY",
    "Container",
    "ContainerPort",
    "ContainerStatus",
    "ConversionError",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStatus",
    "EnvVar",
    "FieldIssue",
    "KindInfo",
    "LabelSelector",
    "ManifestError",
    "ManifestProblem",
    "Namespace",
    "NamespaceSpec",
    "ObjectMeta",
    "Pod",
    "PodSpec",
    "PodStatus",
    "PodTemplateSpec",
    "Registry",
    "Resource",
    "ResourceRequirements",
    "Service",
    "ServiceAccount",
    "ServicePort",
    "ServiceSpec",
    "TemplateMeta",
    "UnknownKind",
    "WorkloadToken",
    "WorkloadTokenSpec",
    "default_resource",
    "from_obj",
    "load_paths",
    "load_text",
    "to_obj",
    "yfield",
]
