"""Errors of the identity service, converted to gRPC status once, in server.py.

    IdentityError
     ├── InvalidToken        token unknown or malformed   -> UNAUTHENTICATED
     ├── IdentityMismatch    identity is not the token's  -> PERMISSION_DENIED
     ├── InvalidIdentity     not a SPIFFE id of ours      -> INVALID_ARGUMENT
     ├── InvalidCsr          CSR rejected                 -> INVALID_ARGUMENT
     └── CaError             trust anchor / issuer files unusable (startup)
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


class CaError(IdentityError):
    pass
