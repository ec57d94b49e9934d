"""Build the destination's indexes from YAML (through the model loader) and translate profiles, for tests."""
from __future__ import annotations

import yaml
from meshlet.controller.model import load_text
from meshlet.destination.index import EndpointIndex
from meshlet.destination.lookup import CallerRef
from meshlet.destination.profiles import Built, build
from meshlet.destination.rules import RULE_KINDS, RuleIndex
from meshlet.destination.targets import parse_path

TD = "cluster.local"


def manifests(text: str, namespace: str = "shop") -> list:
    """Resources from YAML as `meshlet apply -n <namespace>` reads them (a namespace set in a document wins)."""
    docs = [d for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc.get("kind") != "MeshConfig":
            doc.setdefault("metadata", {}).setdefault("namespace", namespace)
    return load_text(yaml.safe_dump_all(docs))


def resources(text: str, namespace: str = "shop") -> list:
    """`manifests` as if stored: created one second apart in document order."""
    out = []
    for i, r in enumerate(manifests(text, namespace)):
        out.append(r.with_meta(creation_timestamp=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", resource_version=i + 1))
    return out


class World:
    """Services and Pods (dst_helpers builders) plus traffic resources from YAML."""

    def __init__(self, yaml_text: str = "", *, services=(), pods=(), namespace: str = "shop",
                 dns: dict[str, tuple[str, ...]] | None = None) -> None:
        self.endpoints = EndpointIndex(TD)
        self.endpoints.replace(services, pods)
        self.rules = RuleIndex()
        loaded = resources(yaml_text, namespace) if yaml_text.strip() else []
        for kind in RULE_KINDS:
            self.rules.replace(kind, [r for r in loaded if r.kind == kind])
        self.dns = dict(dns or {})

    def lookup(self, name: str):
        return self.dns.get(name)

    def build(self, path: str, caller_ns: str = "shop", *, pod: str = "", labels: dict | None = None) -> Built:
        caller = CallerRef(caller_ns, pod, tuple(sorted((labels or {}).items())))
        return build(parse_path(path, caller_ns), caller, self.endpoints, self.rules, self.lookup, path=path)

    def profile(self, path: str, caller_ns: str = "shop", **kw):
        built = self.build(path, caller_ns, **kw)
        assert not built.problems, built.problems
        return built.profile


def backends(route) -> list[tuple[str, int, dict]]:
    return [(b.authority, b.weight, dict(b.subset_labels)) for b in route.backends]
