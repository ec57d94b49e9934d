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
from meshlet.controller.model.convert import (
    ConversionError,
    FieldIssue,
    from_obj,
    to_obj,
    yfield,
)
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
from meshlet.controller.model.kinds import DEFAULT_REGISTRY
from meshlet.controller.model.loader import (
    ManifestError,
    ManifestProblem,
    load_paths,
    load_text,
)
from meshlet.controller.model.mesh import MeshConfig
from meshlet.controller.model.meta import (
    LabelSelector,
    ObjectMeta,
    Resource,
    TemplateMeta,
)
from meshlet.controller.model.registry import KindInfo, Registry, UnknownKind

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_REGISTRY",
    "AuthorizationPolicy",
    "Container",
    "ContainerPort",
    "ContainerStatus",
    "ConversionError",
    "Deployment",
    "DeploymentSpec",
    "DeploymentStatus",
    "DestinationRule",
    "EnvVar",
    "FieldIssue",
    "Gateway",
    "HTTPRoute",
    "KindInfo",
    "LabelSelector",
    "ManifestError",
    "ManifestProblem",
    "MeshConfig",
    "Namespace",
    "NamespaceSpec",
    "ObjectMeta",
    "PeerAuthentication",
    "Pod",
    "PodSpec",
    "PodStatus",
    "PodTemplateSpec",
    "ProxyConfig",
    "Registry",
    "RequestAuthentication",
    "Resource",
    "ResourceRequirements",
    "Service",
    "ServiceAccount",
    "ServiceEntry",
    "ServicePort",
    "ServiceSpec",
    "Sidecar",
    "Telemetry",
    "TemplateMeta",
    "UnknownKind",
    "VirtualService",
    "WorkloadEntry",
    "WorkloadToken",
    "WorkloadTokenSpec",
    "default_resource",
    "fqdn",
    "from_obj",
    "load_paths",
    "load_text",
    "parse_duration",
    "to_obj",
    "yfield",
]
