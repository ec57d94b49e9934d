"""Workload token validation: token -> WorkloadIdentity (namespace, service account).

`TokenValidator` is the seam: local mode uses `LocalTokenValidator`, which
looks the token's SHA-256 up among `WorkloadToken` resources of the store;
a Kubernetes TokenReview validator will implement the same Protocol.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any, Protocol

from .errors import InvalidToken
from .spiffe import WorkloadIdentity

MAX_TOKEN_BYTES = 8 * 1024
WORKLOAD_TOKEN_KIND = "WorkloadToken"


class TokenValidator(Protocol):
    async def validate(self, token: bytes) -> WorkloadIdentity:
        """Return who the token belongs to; raise InvalidToken when it is unknown or malformed."""
        ...


class ResourceLister(Protocol):
    """The part of the Store this validator needs."""

    async def list(self, kind: str, namespace: str | None = None) -> tuple[list[Any], int]: ...


class LocalTokenValidator:
    """Tokens written by the local runtime; the store keeps only their SHA-256."""

    def __init__(self, store: ResourceLister) -> None:
        self._store = store

    async def validate(self, token: bytes) -> WorkloadIdentity:
        token = token.strip()
        if not token:
            raise InvalidToken("token is empty")
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(f"token is too large ({len(token)} bytes)")
        digest = hashlib.sha256(token).hexdigest()
        items, _ = await self._store.list(WORKLOAD_TOKEN_KIND)
        found: WorkloadIdentity | None = None
        for item in items:
            expected = str(getattr(item.spec, "token_sha256", "") or "").lower()
            # Compare against every record so timing does not tell where a match is.
            if hmac.compare_digest(expected.encode(), digest.encode()) and found is None:
                found = WorkloadIdentity(item.metadata.namespace, item.spec.service_account or "default")
        if found is None:
            raise InvalidToken("token is not known")
        return found
