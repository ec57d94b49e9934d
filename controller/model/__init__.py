"""meshlet's resource model: typed kinds, the generic YAML converter, the registry, the loader.

Public API (import from here):
- kinds: Namespace, Service, ServiceAccount, Deployment, Pod, WorkloadToken and their
  spec/status dataclasses; ObjectMeta, Resource, LabelSelector, TemplateMeta
- converter: from_obj, to_obj, yfield, ConversionError, FieldIssue
- registry: DEFAULT_REGISTRY, Registry, KindInfo, UnknownKind
- loader: load_paths, load_text, ManifestError, ManifestProblem
- defaults: default_resource, DEFAULT_NAMESPACE
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
from meshlet.controller.model.kinds import DEFAULT_REGISTRY
from meshlet.controller.model.loader import ManifestError, ManifestProblem, load_paths, load_text
from meshlet.controller.model.meta import LabelSelector, ObjectMeta, Resource, TemplateMeta
from meshlet.controller.model.registry import KindInfo, Registry, UnknownKind

__all__ = [
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
