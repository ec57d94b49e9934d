"""Apply-time reference checks: the hook `meshlet apply` runs before writing.

Istio validates one document at a time; issue 3 also wants apply to refuse a
resource that references something missing. Blocking: a VirtualService or
HTTPRoute destination host that no Service or ServiceEntry defines, and a
VirtualService gateway that does not exist, counting both the store and the
same request (order inside a request does not matter). Warnings only (Istio
accepts these, and the missing piece often comes next): an undefined subset,
unreachable rules, conflicting VirtualServices, portLevelMtls without selector, an HTTPS
gateway server without tls.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from meshlet.controller.analyze import analyzers as a
from meshlet.controller.analyze import messages as msg
from meshlet.controller.analyze.messages import Message
from meshlet.controller.analyze.run import analyze
from meshlet.controller.analyze.snapshot import Snapshot
from meshlet.controller.model import DEFAULT_REGISTRY, Resource
from meshlet.controller.store.base import Store

CHECKED_KINDS = frozenset({"VirtualService", "HTTPRoute", "PeerAuthentication", "Gateway"})
"""Kinds whose references are checked; a request without them reads nothing more from the store."""
CONTEXT_KINDS = ("Service", "ServiceEntry", "DestinationRule", "Gateway", "VirtualService", "HTTPRoute")
BLOCKING_REFERENCES = frozenset({"host", "gateway", "service"})
ANALYZERS = (a.destination_hosts, a.gateways, a.gateway_servers, a.conflicting_mesh_hosts, a.unreachable_rules,
             a.peer_authentications, a.http_routes)


@dataclass(frozen=True)
class Admission:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _blocking(m: Message) -> bool:
    return m.type is msg.REFERENCED_RESOURCE_NOT_FOUND and m.args[0] in BLOCKING_REFERENCES


def _describe(m: Message) -> str:
    label = f"{DEFAULT_REGISTRY.for_kind(m.origin.kind).display}/{m.origin.name}"
    where = f"{m.path}: " if m.path else ""
    hint = ""
    if _blocking(m):
        hint = {"host": " (no Service or ServiceEntry defines it; apply it first or in the same request)",
                "service": " (no such Service; apply it first or in the same request)",
                "gateway": " (no such Gateway; apply it first or in the same request)"}[m.args[0]]
    return f"{label}: {where}{m.text}{hint} [{m.type.code}]"


def admit_snapshot(snap: Snapshot, incoming: Sequence[Resource]) -> Admission:
    """Pure core: messages about the incoming objects, split into blocking errors and warnings."""
    keys = {r.key for r in incoming}
    verdict = Admission()
    for m in analyze(snap, None, ANALYZERS):
        if (m.origin.kind, m.origin.namespace, m.origin.name) not in keys:
            continue
        (verdict.errors if _blocking(m) else verdict.warnings).append(_describe(m))
    return verdict


async def admit(store: Store, incoming: Sequence[Resource]) -> Admission:
    """Check `incoming` against the store's contents plus the request itself."""
    if not any(r.kind in CHECKED_KINDS for r in incoming):
        return Admission()
    stored: list[Resource] = []
    for kind in CONTEXT_KINDS:
        items, _ = await store.list(kind)
        stored.extend(items)
    return admit_snapshot(Snapshot.of(stored, incoming), incoming)
