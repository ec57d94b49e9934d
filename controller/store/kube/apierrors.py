"""API errors to store errors: the one place the Kubernetes store converts them."""
from __future__ import annotations

from collections.abc import Sequence

from meshlet.controller.model import Resource
from meshlet.controller.store.base import ApplyResult
from meshlet.controller.store.errors import Conflict, Gone, Invalid, NotFound, StoreError
from meshlet.controller.store.kube.transport import ApiError, TransportError, Unreachable


def to_store_error(e: TransportError, what: str) -> StoreError:
    """`what` (e.g. "list services") failed with `e`: the StoreError callers handle."""
    if isinstance(e, Unreachable):
        return StoreError(f"{what}: cannot reach the API server: {e}")
    assert isinstance(e, ApiError)
    detail = e.message + ("".join(f"\n  {c}" for c in e.causes) if e.causes else "")
    if e.status == 404:
        return NotFound(f"{what}: {e.message}")
    if e.status == 409:
        return Conflict(f"{what}: {e.message}")
    if e.status == 410:
        return Gone(f"{what}: {e.message}; list again")
    if e.status in (400, 422):
        return Invalid([f"{what}: {e.message}", *e.causes] if e.causes else f"{what}: {e.message}")
    if e.status in (401, 403):
        return StoreError(f"{what}: the API server refused ({e.status} {e.reason or 'Forbidden'}): {detail}")
    return StoreError(f"{what}: {e}")


def is_missing_object(e: ApiError) -> bool:
    """404 for an object (its Status names it), as opposed to 404 for a path the server does not serve."""
    details = e.body.get("details")
    return e.status == 404 and isinstance(details, dict) and bool(details.get("name"))


def partial_failure(error: StoreError, done: list[ApplyResult], rest: Sequence[Resource]) -> StoreError:
    """`error` (same class) saying what was applied before it and what was not attempted."""
    applied = ", ".join(f"{r.resource.kind.lower()}/{r.resource.metadata.name}" for r in done)
    skipped = ", ".join(f"{r.kind.lower()}/{r.metadata.name}" for r in rest)
    message = (f"{error} — applied before the failure: {applied}"
               + (f"; not attempted: {skipped}" if skipped else ""))
    out: StoreError = Invalid(message) if isinstance(error, Invalid) else type(error)(message)
    out.applied = list(done)  # type: ignore[attr-defined]
    return out
