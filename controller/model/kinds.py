"""Every kind meshlet knows. Adding a kind = its dataclasses + one line here."""
from __future__ import annotations

from meshlet.controller.model.core import Deployment, Namespace, Pod, Service, ServiceAccount, WorkloadToken
from meshlet.controller.model.registry import KindInfo, Registry

KINDS: tuple[KindInfo, ...] = (
    KindInfo(Namespace, "namespaces", ("ns",)),
    KindInfo(Service, "services", ("svc",)),
    KindInfo(ServiceAccount, "serviceaccounts", ("sa",)),
    KindInfo(Deployment, "deployments", ("deploy",)),
    KindInfo(Pod, "pods", ("po",)),
    KindInfo(WorkloadToken, "workloadtokens", ("wt",), internal=True),
)

DEFAULT_REGISTRY = Registry(KINDS)
