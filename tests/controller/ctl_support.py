"""Helpers shared by the controller tests (imported as a plain module from tests/controller)."""
from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path

from meshlet.controller.model import ObjectMeta, Pod, PodSpec, Resource, load_text
from meshlet.controller.model.core import Container
from meshlet.controller.store import ClusterIPAllocator, SqliteStore, WatchEvent

SERVICE_CIDR = ipaddress.IPv4Network("198.19.0.0/16")


def make_store(path: Path, **kwargs: object) -> SqliteStore:
    return SqliteStore(path, defaulters=[ClusterIPAllocator(SERVICE_CIDR)], **kwargs)  # type: ignore[arg-type]


def svc(name: str, namespace: str = "default", port: int = 80, ip: str | None = None) -> Resource:
    cluster_ip = f"\n  clusterIP: {ip}" if ip else ""
    return load_text(f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: {port}, name: http}}]{cluster_ip}
""")[0]


def ns(name: str) -> Resource:
    return load_text(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n")[0]


def pod(name: str, namespace: str = "default", image: str = "app") -> Pod:
    return Pod(metadata=ObjectMeta(name=name, namespace=namespace, labels={"app": name}),
               spec=PodSpec(containers=(Container(name="app", image=image),)))


async def take(events: AsyncIterator[WatchEvent], n: int, timeout: float = 20.0) -> list[WatchEvent]:
    """The next n events, failing (not hanging) if they don't come within a generous timeout."""
    out: list[WatchEvent] = []

    async def run() -> None:
        async for ev in events:
            out.append(ev)
            if len(out) == n:
                return
    await asyncio.wait_for(run(), timeout)
    return out


def summary(events: list[WatchEvent]) -> list[tuple[str, str, str]]:
    return [(e.type.value, e.resource.kind, e.resource.metadata.name) for e in events]
