"""The Certify service in memory (grpclib.testing.ChannelFor) with fake validators."""
import pytest
import structlog
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.testing import ChannelFor
from identity_helpers import ALICE, TD, make_csr
from meshlet.api import identity_pb
from meshlet.identity.errors import InvalidToken, Unavailable
from meshlet.identity.issuer import ensure_ca
from meshlet.identity.server import IdentityMetrics, IdentityService
from meshlet.identity.spiffe import WorkloadIdentity
from prometheus_client import CollectorRegistry


class Validator:
    def __init__(self, result):
        self.result = result

    async def validate(self, token):
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


async def _certify(tmp_path, validator, **request):
    registry = CollectorRegistry()
    service = IdentityService(ca=ensure_ca(tmp_path, TD), validator=validator,
                              metrics=IdentityMetrics.create(registry), log=structlog.get_logger())
    async with ChannelFor([service]) as channel:
        req = identity_pb.CertifyRequest(**{"identity": ALICE, "token": b"t", "certificate_signing_request": make_csr(),
                                            **request})
        try:
            return await identity_pb.IdentityStub(channel).certify(req), registry
        except GRPCError as e:
            e.registry = registry
            raise


async def test_issues_for_matching_identity(tmp_path):
    resp, registry = await _certify(tmp_path, Validator(WorkloadIdentity("shop", "alice")))
    assert resp.leaf_certificate and len(resp.intermediate_certificates) == 1
    assert registry.get_sample_value("identity_certificates_issued_total") == 1


@pytest.mark.parametrize(
    "result, request_fields, status, reason",
    [
        (InvalidToken("token is not known"), {}, Status.UNAUTHENTICATED, "invalid_token"),
        (WorkloadIdentity("shop", "bob"), {}, Status.PERMISSION_DENIED, "identity_mismatch"),
        (WorkloadIdentity("shop", "alice"), {"identity": "spiffe://elsewhere/ns/shop/sa/alice"},
         Status.INVALID_ARGUMENT, "invalid_identity"),
        (WorkloadIdentity("shop", "alice"), {"certificate_signing_request": b""}, Status.INVALID_ARGUMENT, "invalid_csr"),
        (Unavailable("TokenReview failed: cannot reach the API server"), {}, Status.UNAVAILABLE, "unavailable"),
        (RuntimeError("database is locked"), {}, Status.INTERNAL, "internal"),
    ],
)
async def test_refusals(tmp_path, result, request_fields, status, reason):
    with pytest.raises(GRPCError) as e:
        await _certify(tmp_path, Validator(result), **request_fields)
    assert e.value.status is status
    assert e.value.registry.get_sample_value("identity_certificates_refused_total", {"reason": reason}) == 1
    if status is Status.INTERNAL:
        assert "database" not in (e.value.message or "")  # internals are logged, not sent
