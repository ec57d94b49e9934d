"""TokenReviewValidator: review answers -> WorkloadIdentity or InvalidToken; cache; Unavailable passes through.

The reviewer here is a fake standing in for the API server's answer; the real
TokenReview round trip is tested in tests/kube/test_identity_tokenreview.py.
"""
import pytest
from meshlet.identity.errors import InvalidToken, Unavailable
from meshlet.identity.spiffe import WorkloadIdentity
from meshlet.identity.tokenreview import (
    DEFAULT_AUDIENCE,
    ReviewResult,
    TokenReviewSettings,
    TokenReviewValidator,
    identity_of,
)

AUD = (DEFAULT_AUDIENCE,)


def ok(user: str = "system:serviceaccount:shop:alice", audiences=AUD) -> ReviewResult:
    return ReviewResult(authenticated=True, username=user, audiences=tuple(audiences))


class FakeReviewer:
    def __init__(self, answer: ReviewResult | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    async def review(self, token, audiences):
        self.calls.append((token, tuple(audiences)))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_identity_of_service_account():
    assert identity_of(ok(), AUD) == WorkloadIdentity("shop", "alice")


@pytest.mark.parametrize(("result", "reason"), [
    (ReviewResult(authenticated=False, error="token audiences [\"other\"] is invalid for the target audiences"),
     "invalid for the target audiences"),
    (ReviewResult(authenticated=False), "did not authenticate"),
    (ok(audiences=("other",)), "do not include"),
    (ok(audiences=()), "do not include"),
    (ok(user="admin"), "not to a service account"),
    (ok(user="system:serviceaccount:shop"), "not of the form"),
    (ok(user="system:serviceaccount::alice"), "not of the form"),
    (ok(user="system:serviceaccount:shop:a:b"), "not of the form"),
])
def test_identity_of_refusals(result, reason):
    with pytest.raises(InvalidToken, match=reason):
        identity_of(result, AUD)


async def test_validator_sends_audiences_and_caches_positive_answers():
    now = [100.0]
    reviewer = FakeReviewer(ok())
    v = TokenReviewValidator(reviewer, TokenReviewSettings(cache_ttl=60), clock=lambda: now[0])
    assert await v.validate(b" tok-1\n") == WorkloadIdentity("shop", "alice")
    assert await v.validate(b"tok-1") == WorkloadIdentity("shop", "alice")
    assert reviewer.calls == [("tok-1", AUD)]
    now[0] += 61  # expired: asked again
    await v.validate(b"tok-1")
    assert len(reviewer.calls) == 2


async def test_validator_never_caches_refusals():
    reviewer = FakeReviewer(ReviewResult(authenticated=False, error="expired"))
    v = TokenReviewValidator(reviewer)
    for _ in range(2):
        with pytest.raises(InvalidToken, match="expired"):
            await v.validate(b"tok")
    assert len(reviewer.calls) == 2


async def test_validator_cache_is_bounded():
    reviewer = FakeReviewer(ok())
    v = TokenReviewValidator(reviewer, TokenReviewSettings(cache_size=2))
    for t in (b"a", b"b", b"c", b"a"):  # "a" was evicted by "c"
        await v.validate(t)
    assert [c[0] for c in reviewer.calls] == ["a", "b", "c", "a"]


async def test_validator_rejects_malformed_tokens_without_asking():
    reviewer = FakeReviewer(ok())
    v = TokenReviewValidator(reviewer)
    for bad, reason in ((b"", "empty"), (b"x" * 9000, "too large"), ("é".encode(), "not ASCII")):
        with pytest.raises(InvalidToken, match=reason):
            await v.validate(bad)
    assert reviewer.calls == []


async def test_unavailable_is_not_a_refusal():
    v = TokenReviewValidator(FakeReviewer(Unavailable("TokenReview failed: cannot reach the API server")))
    with pytest.raises(Unavailable):
        await v.validate(b"tok")


async def test_api_server_down_is_unavailable():
    """A real kubernetes_asyncio client against a closed loopback port: UNAVAILABLE, not a refusal."""
    import socket

    from kubernetes_asyncio import client
    from meshlet.identity.tokenreview import KubeTokenReviewer

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = client.Configuration(host=f"https://127.0.0.1:{port}")
    conf.verify_ssl = False
    api = client.ApiClient(configuration=conf)
    try:
        v = TokenReviewValidator(KubeTokenReviewer(api, timeout=10))
        with pytest.raises(Unavailable, match="cannot reach the API server"):
            await v.validate(b"some-token")
    finally:
        await api.close()
