"""The Identity gRPC service: token + CSR in, 24-hour leaf certificate out.

Errors are converted to gRPC status here, once:
InvalidToken -> UNAUTHENTICATED, IdentityMismatch -> PERMISSION_DENIED,
InvalidIdentity/InvalidCsr -> INVALID_ARGUMENT, Unavailable -> UNAVAILABLE. Every refusal is logged with
its reason and counted.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from cryptography.hazmat.primitives import serialization
from grpclib import GRPCError
from grpclib.const import Status
from meshlet.api import identity_pb
from prometheus_client import CollectorRegistry, Counter

from .csr import check_csr
from .errors import (
    IdentityError,
    IdentityMismatch,
    InvalidCsr,
    InvalidIdentity,
    InvalidToken,
    Unavailable,
)
from .issuer import CA
from .spiffe import parse_spiffe_id
from .validator import TokenValidator

_STATUS: dict[type[IdentityError], tuple[Status, str]] = {
    InvalidToken: (Status.UNAUTHENTICATED, "invalid_token"),
    IdentityMismatch: (Status.PERMISSION_DENIED, "identity_mismatch"),
    InvalidIdentity: (Status.INVALID_ARGUMENT, "invalid_identity"),
    InvalidCsr: (Status.INVALID_ARGUMENT, "invalid_csr"),
    Unavailable: (Status.UNAVAILABLE, "unavailable"),
}


@dataclass(frozen=True)
class IdentityMetrics:
    issued: Counter
    refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> IdentityMetrics:
        return cls(
            issued=Counter(
                "identity_certificates_issued", "Leaf certificates issued", registry=registry
            ),
            refused=Counter(
                "identity_certificates_refused", "Certify requests refused", ["reason"], registry=registry
            ),
        )


class IdentityService(identity_pb.IdentityBase):
    def __init__(
        self,
        *,
        ca: CA,
        validator: TokenValidator,
        metrics: IdentityMetrics,
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        self._ca = ca
        self._validator = validator
        self._metrics = metrics
        self._log = log.bind(component="identity-server")

    @property
    def ca(self) -> CA:
        return self._ca

    def set_ca(self, ca: CA) -> None:
        """Sign with `ca` from now on (a rotated issuer); requests in flight finish with the old one."""
        self._ca = ca

    async def certify(self, message: identity_pb.CertifyRequest) -> identity_pb.CertifyResponse:
        try:
            return await self._certify(message)
        except IdentityError as e:
            status, reason = _STATUS.get(type(e), (Status.INTERNAL, "internal"))
            self._metrics.refused.labels(reason=reason).inc()
            self._log.warning("certify.refused", identity=message.identity, reason=reason, error=str(e))
            raise GRPCError(status, str(e)) from None
        except Exception as e:  # noqa: BLE001 - boundary: never crash the server, never leak internals
            self._metrics.refused.labels(reason="internal").inc()
            self._log.exception("certify.failed", identity=message.identity, error=repr(e))
            raise GRPCError(Status.INTERNAL, "internal error while issuing the certificate") from None

    async def _certify(self, message: identity_pb.CertifyRequest) -> identity_pb.CertifyResponse:
        identity = message.identity
        ca = self._ca
        owner = await self._validator.validate(message.token)
        requested = parse_spiffe_id(identity, ca.trust_domain)
        if owner != requested:
            raise IdentityMismatch(
                f"token belongs to {owner.spiffe_id(ca.trust_domain)!r}, not to the requested {identity!r}"
            )
        csr, _ = check_csr(message.certificate_signing_request, identity, ca.trust_domain)
        # Signing is CPU work of a few hundred microseconds: keep it off the loop anyway.
        leaf = await asyncio.to_thread(ca.sign_leaf, csr, identity)
        self._metrics.issued.inc()
        self._log.info("certify.issued", identity=identity, serial=f"{leaf.serial_number:x}",
                       not_after=leaf.not_valid_after_utc.isoformat())
        return identity_pb.CertifyResponse(
            leaf_certificate=leaf.public_bytes(serialization.Encoding.DER),
            intermediate_certificates=[ca.issuer_der],
            valid_until=int(leaf.not_valid_after_utc.timestamp()),
        )
