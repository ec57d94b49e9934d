"""Errors of the identity service, converted to gRPC status once, in server.py.

    IdentityError
     ├── InvalidToken        token unknown or malformed   -> UNAUTHENTICATED
     ├── IdentityMismatch    identity is not the token's  -> PERMISSION_DENIED
     ├── InvalidIdentity     not a SPIFFE id of ours      -> INVALID_ARGUMENT
     ├── InvalidCsr          CSR rejected                 -> INVALID_ARGUMENT
     ├── Unavailable         cannot check now (API server down) -> UNAVAILABLE
     └── CaError             trust anchor / issuer unusable (startup, or a rotated issuer Secret)
"""
from __future__ import annotations


class IdentityError(Exception):
    """Base of every error the identity service raises on purpose."""


class InvalidToken(IdentityError):
    pass


class IdentityMismatch(IdentityError):
    pass


class InvalidIdentity(IdentityError):
    pass


class InvalidCsr(IdentityError):
    pass


class Unavailable(IdentityError):
    """A dependency (the Kubernetes API for TokenReview) cannot answer now: the proxy retries."""


class CaError(IdentityError):
    pass
