"""The Store protocol every backend implements (SQLite now, Kubernetes later), and its value types."""
from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from meshlet.controller.model import Resource

KindRef = str | type[Resource]
"""A kind: its Kind ("Pod"), any name `meshlet get` accepts ("pods", "po"), or its class."""


class Action(str, enum.Enum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


class EventType(str, enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class ApplyResult:
    resource: Resource
    """The object as stored (metadata filled in: resourceVersion, uid, ...)."""
    action: Action


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    resource: Resource
    """For DELETED: the object's last state."""
    resource_version: int
    """Resume point: `watch(..., since=event.resource_version)` continues after this event.
    For the ADDED events of a snapshot it is the snapshot's version (the same for all)."""


@runtime_checkable
class Store(Protocol):
    async def get(self, kind: KindRef, namespace: str | None, name: str) -> Resource | None:
        """The object, or None. `namespace` is ignored for cluster-scoped kinds; None = "default"."""
        ...

    async def list(self, kind: KindRef, namespace: str | None = None) -> tuple[list[Resource], int]:
        """(objects sorted by namespace/name, current resource version); namespace None = all."""
        ...

    async def apply(self, resources: Sequence[Resource]) -> list[ApplyResult]:
        """Create or update each object by (kind, namespace, name), all-or-nothing.

        Raises Invalid (nothing applied) listing every problem; Conflict when an
        object carries a non-zero resourceVersion that is not the stored one.
        """
        ...

    async def delete(self, kind: KindRef, namespace: str | None, name: str) -> bool:
        """True if it existed. Deleting a Namespace deletes everything in it."""
        ...

    async def update_status(self, resource: Resource) -> Resource:
        """Replace only the status (no generation bump); NotFound / Conflict. Returns the stored object."""
        ...

    def watch(self, kinds: set[str] | None = None, since: int | None = None) -> AsyncIterator[WatchEvent]:
        """since=None: current objects as ADDED, then changes; since=rv: changes after rv.

        Raises Gone if `since` is older than the retained change log (list again, then
        watch from the list's version). Kinds are names as for `get` ("Pod", "pods").
        To know when the initial state is complete, `list` each kind, then
        `watch(kinds, since=min(versions))` and skip events at or below a kind's list version.
        """
        ...

    async def close(self) -> None:
        ...
