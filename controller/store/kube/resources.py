"""Where each kind lives in the Kubernetes API: group, version, plural and the REST paths (pure).

The version is the model's primary apiVersion of the kind (`KindInfo.api_version`):
core kinds at /api/v1, the others at /apis/<group>/<version> (Istio's CRDs at the
versions Istio serves, meshlet's own at meshlet.io/v1alpha1).
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from meshlet.controller.model.registry import KindInfo


@dataclass(frozen=True)
class KubeResource:
    info: KindInfo

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def group(self) -> str:
        return self.info.group

    @property
    def version(self) -> str:
        return self.info.api_version.rpartition("/")[2]

    @property
    def plural(self) -> str:
        return self.info.plural

    @property
    def namespaced(self) -> bool:
        return self.info.namespaced

    @property
    def display(self) -> str:
        """`pods`, `deployments.apps`, `virtualservices.networking.istio.io/v1`: for messages."""
        return self.plural + (f".{self.group}/{self.version}" if self.group else "")

    def _base(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection(self, namespace: str | None = None) -> str:
        """The list/watch/create path: all namespaces when `namespace` is None (or the kind is cluster-scoped)."""
        if self.namespaced and namespace:
            return f"{self._base()}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{self._base()}/{self.plural}"

    def item(self, namespace: str | None, name: str) -> str:
        ns = namespace if self.namespaced else None
        if self.namespaced and not ns:
            raise ValueError(f"{self.kind} {name!r} needs a namespace")
        return f"{self.collection(ns)}/{quote(name, safe='')}"

    def status(self, namespace: str | None, name: str) -> str:
        return f"{self.item(namespace, name)}/status"
