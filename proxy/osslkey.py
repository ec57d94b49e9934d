"""EC P-256 key and CSR through the libcrypto that `ssl` already loaded (ctypes).

Keeps `cryptography` (~8 MB of RSS) out of the proxy process. The key lives
in OpenSSL memory for the process's lifetime; its PEM only ever exists in
Python memory and in the anonymous memfd that `tlsctx` loads it from.
Requires OpenSSL 3 (`EVP_PKEY_CTX_new_from_name`); `available()` says
whether this path works, else `identity` falls back to `cryptography`.
"""
from __future__ import annotations

import ctypes
import re
import ssl
from typing import Any

NID_SUBJECT_ALT_NAME = 85
BIO_CTRL_INFO = 3
_SAFE_URI = re.compile(r"spiffe://[A-Za-z0-9._~:/-]+\Z")
_lib: Any = None


class OsslError(RuntimeError):
    """libcrypto refused an operation (the message names which)."""


def _libcrypto() -> Any:
    global _lib  # noqa: PLW0603 - a cached handle to a shared library, not state
    if _lib is not None:
        return _lib
    import _ssl

    path = "libcrypto.so.3"
    with open("/proc/self/maps") as maps:  # the very libcrypto `_ssl` is linked against
        for line in maps:
            if "libcrypto.so" in line:
                path = line.split()[-1]
                break
    del _ssl
    lib = ctypes.CDLL(path)
    P, Int, C = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p  # noqa: N806
    for name, res, args in (
        ("EVP_PKEY_CTX_new_from_name", P, (P, C, C)),
        ("EVP_PKEY_keygen_init", Int, (P,)),
        ("EVP_PKEY_CTX_set_group_name", Int, (P, C)),
        ("EVP_PKEY_generate", Int, (P, ctypes.POINTER(P))),
        ("EVP_PKEY_CTX_free", None, (P,)),
        ("EVP_PKEY_free", None, (P,)),
        ("X509_REQ_new", P, ()),
        ("X509_REQ_free", None, (P,)),
        ("X509_REQ_set_version", Int, (P, ctypes.c_long)),
        ("X509_REQ_set_pubkey", Int, (P, P)),
        ("X509V3_EXT_conf_nid", P, (P, P, Int, C)),
        ("X509_EXTENSION_free", None, (P,)),
        ("OPENSSL_sk_new_null", P, ()),
        ("OPENSSL_sk_push", Int, (P, P)),
        ("OPENSSL_sk_free", None, (P,)),
        ("X509_REQ_add_extensions", Int, (P, P)),
        ("EVP_sha256", P, ()),
        ("X509_REQ_sign", Int, (P, P, P)),
        ("BIO_s_mem", P, ()),
        ("BIO_new", P, (P,)),
        ("BIO_free", Int, (P,)),
        ("BIO_ctrl", ctypes.c_long, (P, Int, ctypes.c_long, P)),
        ("PEM_write_bio_X509_REQ", Int, (P, P)),
        ("PEM_write_bio_PrivateKey", Int, (P, P, P, P, Int, P, P)),
    ):
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    _lib = lib
    return lib


def available() -> bool:
    try:
        return ssl.OPENSSL_VERSION_INFO[0] >= 3 and _libcrypto() is not None
    except (OSError, AttributeError):
        return False


def _check(ok: int, what: str) -> None:
    if ok <= 0:
        raise OsslError(f"libcrypto: {what} failed")


def _bio_bytes(lib: Any, write: Any) -> bytes:
    bio = lib.BIO_new(lib.BIO_s_mem())
    if not bio:
        raise OsslError("libcrypto: BIO_new failed")
    try:
        _check(write(bio), "PEM write")
        ptr = ctypes.c_void_p()
        n = lib.BIO_ctrl(bio, BIO_CTRL_INFO, 0, ctypes.byref(ptr))
        return ctypes.string_at(ptr, n)
    finally:
        lib.BIO_free(bio)


class EcKey:
    """An EC P-256 private key held by libcrypto."""

    def __init__(self) -> None:
        lib = _libcrypto()
        ctx = lib.EVP_PKEY_CTX_new_from_name(None, b"EC", None)
        if not ctx:
            raise OsslError("libcrypto: no EC support")
        pkey = ctypes.c_void_p()
        try:
            _check(lib.EVP_PKEY_keygen_init(ctx), "keygen init")
            _check(lib.EVP_PKEY_CTX_set_group_name(ctx, b"P-256"), "select P-256")
            _check(lib.EVP_PKEY_generate(ctx, ctypes.byref(pkey)), "EC key generation")
        finally:
            lib.EVP_PKEY_CTX_free(ctx)
        self._lib = lib
        self._pkey = pkey

    def __del__(self) -> None:
        if getattr(self, "_pkey", None):
            self._lib.EVP_PKEY_free(self._pkey)
            self._pkey = None

    def private_pem(self) -> bytes:
        """PKCS#8 PEM, unencrypted (only ever handed to `tlsctx`)."""
        return _bio_bytes(self._lib, lambda bio: self._lib.PEM_write_bio_PrivateKey(
            bio, self._pkey, None, None, 0, None, None))

    def csr(self, uri: str) -> bytes:
        """A PEM PKCS#10 request with an empty subject whose only SAN is the URI `uri`."""
        if not _SAFE_URI.match(uri):
            raise ValueError(f"identity {uri!r} is not a plain spiffe:// URI")
        lib = self._lib
        req = lib.X509_REQ_new()
        if not req:
            raise OsslError("libcrypto: X509_REQ_new failed")
        try:
            _check(lib.X509_REQ_set_version(req, 0), "set CSR version")
            _check(lib.X509_REQ_set_pubkey(req, self._pkey), "set CSR key")
            ext = lib.X509V3_EXT_conf_nid(None, None, NID_SUBJECT_ALT_NAME, f"URI:{uri}".encode())
            if not ext:
                raise OsslError("libcrypto: building the SAN extension failed")
            exts = lib.OPENSSL_sk_new_null()
            try:
                _check(lib.OPENSSL_sk_push(exts, ext), "extension list")
                _check(lib.X509_REQ_add_extensions(req, exts), "add SAN")
            finally:
                lib.OPENSSL_sk_free(exts)
                lib.X509_EXTENSION_free(ext)
            _check(lib.X509_REQ_sign(req, self._pkey, lib.EVP_sha256()), "sign CSR")
            return _bio_bytes(lib, lambda bio: lib.PEM_write_bio_X509_REQ(bio, req))
        finally:
            lib.X509_REQ_free(req)
