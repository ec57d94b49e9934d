"""Kubernetes mode: workload tokens are projected service-account tokens, checked with a TokenReview.

`TokenReviewValidator` implements the `TokenValidator` seam. It sends the token
to the API server (authentication.k8s.io/v1 TokenReview) with the audiences
identity accepts (`identity.meshlet.io` by default), and turns the answer into
a `WorkloadIdentity`:

- authenticated, the answer's audiences include one of ours, and the user is
  `system:serviceaccount:<namespace>:<name>` -> WorkloadIdentity(namespace, name);
- anything else -> InvalidToken naming why (unauthenticated with the API
  server's reason, e.g. a wrong audience or an expired token; not a service account);
- the API server cannot be asked (down, timeout, identity's own RBAC missing)
  -> Unavailable, so the proxy sees UNAVAILABLE and retries instead of a refusal.

Positive answers are cached briefly (`cache_ttl`, bounded LRU keyed by the
token's SHA-256) so a burst of renewals does not become a burst of reviews;
refusals are never cached.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from .errors import InvalidToken, Unavailable
from .spiffe import WorkloadIdentity
from .validator import MAX_TOKEN_BYTES

DEFAULT_AUDIENCE = "identity.meshlet.io"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class ReviewResult:
    """The parts of a TokenReview status identity uses."""

    authenticated: bool
    username: str = ""
    audiences: tuple[str, ...] = ()
    error: str = ""


class TokenReviewer(Protocol):
    async def review(self, token: str, audiences: Sequence[str]) -> ReviewResult:
        """Ask the API server; raise Unavailable when it cannot answer."""
        ...


@dataclass(frozen=True)
class TokenReviewSettings:
    audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)
    cache_ttl: float = 60.0
    """Seconds a positive answer is reused (0: never cached)."""
    cache_size: int = 1024


def identity_of(result: ReviewResult, audiences: Sequence[str]) -> WorkloadIdentity:
    """The workload a review answer names (pure); InvalidToken when the answer is a refusal."""
    if not result.authenticated:
        reason = result.error or "the API server did not authenticate it"
        raise InvalidToken(f"token is not valid: {reason}")
    if audiences and not set(result.audiences) & set(audiences):
        raise InvalidToken(
            f"token audiences {list(result.audiences)} do not include {list(audiences)}"
        )
    user = result.username
    if not user.startswith(SA_PREFIX):
        raise InvalidToken(f"token belongs to {user!r}, not to a service account")
    namespace, sep, name = user[len(SA_PREFIX):].partition(":")
    if not sep or not namespace or not name or ":" in name:
        raise InvalidToken(f"token user {user!r} is not of the form {SA_PREFIX}<namespace>:<name>")
    return WorkloadIdentity(namespace, name)


class TokenReviewValidator:
    """TokenValidator backed by TokenReview, with a short positive cache."""

    def __init__(self, reviewer: TokenReviewer, settings: TokenReviewSettings = TokenReviewSettings(),
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self._reviewer = reviewer
        self._settings = settings
        self._clock = clock
        self._cache: OrderedDict[bytes, tuple[float, WorkloadIdentity]] = OrderedDict()

    async def validate(self, token: bytes) -> WorkloadIdentity:
        token = token.strip()
        if not token:
            raise InvalidToken("token is empty")
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(f"token is too large ({len(token)} bytes)")
        try:
            text = token.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidToken("token is not a service-account token (not ASCII)") from None
        key = hashlib.sha256(token).digest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            return cached[1]
        self._cache.pop(key, None)
        result = await self._reviewer.review(text, self._settings.audiences)
        identity = identity_of(result, self._settings.audiences)
        if self._settings.cache_ttl > 0:
            self._cache[key] = (now + self._settings.cache_ttl, identity)
            while len(self._cache) > self._settings.cache_size:
                self._cache.popitem(last=False)
        return identity


class KubeTokenReviewer:
    """TokenReviewer over kubernetes_asyncio (an open `ApiClient`)."""

    def __init__(self, api_client: Any, *, timeout: float = 10.0) -> None:
        from kubernetes_asyncio import client

        self._api = client.AuthenticationV1Api(api_client)
        self._client = client
        self._timeout = timeout

    async def review(self, token: str, audiences: Sequence[str]) -> ReviewResult:
        from kubernetes_asyncio.client.exceptions import ApiException

        body = self._client.V1TokenReview(
            api_version="authentication.k8s.io/v1", kind="TokenReview",
            spec=self._client.V1TokenReviewSpec(token=token, audiences=list(audiences) or None),
        )
        try:
            answer = await self._api.create_token_review(body=body, _request_timeout=self._timeout)
        except ApiException as e:
            raise Unavailable(f"TokenReview failed: the API server answered {e.status} {e.reason}") from None
        except (OSError, TimeoutError, aiohttp.ClientError) as e:
            raise Unavailable(f"TokenReview failed: cannot reach the API server: {str(e) or type(e).__name__}") from None
        status = answer.status
        if status is None:
            return ReviewResult(authenticated=False, error="the API server returned no status")
        user = status.user
        return ReviewResult(
            authenticated=bool(status.authenticated),
            username=(user.username or "") if user is not None else "",
            audiences=tuple(status.audiences or ()),
            error=status.error or "",
        )
