"""Kubernetes mode: the issuer certificate and key come from a Secret, re-read so rotation is picked up.

The Secret (`meshlet-identity-issuer` in the control-plane namespace, type
kubernetes.io/tls) holds `tls.crt` (the issuer certificate), `tls.key` (its
EC P-256 key) and `ca.crt` (the trust anchor bundle). `ca_from_secret` (pure)
checks it like the local files (`issuer.ca_from_pem`: parses, key matches,
signed by an anchor, not expired), naming the Secret and key at fault.

`IssuerSecret` reads it through the API: `load()` once at start-up (a missing
or unusable Secret is a start-up error), then `follow()` re-reads it every
`refresh` seconds and hands a changed, valid CA to `on_change`. A Secret that
turns bad, disappears, or an API server that cannot be reached keeps the last
good CA serving (logged, and retried at the next refresh).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from .errors import CaError
from .issuer import CA, ca_from_pem

CERT_KEY, KEY_KEY, ANCHORS_KEY = "tls.crt", "tls.key", "ca.crt"
DEFAULT_SECRET = "meshlet-identity-issuer"


@dataclass(frozen=True)
class SecretRef:
    namespace: str
    name: str = DEFAULT_SECRET

    def __str__(self) -> str:
        return f"Secret {self.namespace}/{self.name}"


def decode_secret_data(data: Mapping[str, str] | None, ref: SecretRef) -> dict[str, bytes]:
    """A Secret's `data` (base64 values, as the API returns it) decoded; CaError on bad base64."""
    out: dict[str, bytes] = {}
    for key, value in (data or {}).items():
        try:
            out[key] = base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError):
            raise CaError(f"{ref} key {key!r}: not valid base64") from None
    return out


def ca_from_secret(values: Mapping[str, bytes], ref: SecretRef, trust_domain: str) -> CA:
    """The CA held by the Secret's decoded values (pure); CaError names the Secret key at fault."""
    missing = [k for k in (CERT_KEY, KEY_KEY, ANCHORS_KEY) if not values.get(k)]
    if missing:
        raise CaError(f"{ref} lacks {', '.join(repr(k) for k in missing)} "
                      f"(needs {CERT_KEY!r}: issuer certificate, {KEY_KEY!r}: its key, "
                      f"{ANCHORS_KEY!r}: trust anchors)")
    return ca_from_pem(
        anchors_pem=values[ANCHORS_KEY], issuer_pem=values[CERT_KEY], key_pem=values[KEY_KEY],
        trust_domain=trust_domain,
        sources=(f"{ref} key {ANCHORS_KEY!r}", f"{ref} key {CERT_KEY!r}", f"{ref} key {KEY_KEY!r}"),
    )


class IssuerSecret:
    """Reads the issuer Secret through kubernetes_asyncio (an open `ApiClient`)."""

    def __init__(self, api_client: Any, ref: SecretRef, trust_domain: str, *,
                 log: structlog.stdlib.BoundLogger, timeout: float = 10.0) -> None:
        from kubernetes_asyncio import client

        self._api = client.CoreV1Api(api_client)
        self.ref = ref
        self._trust_domain = trust_domain
        self._timeout = timeout
        self._log = log.bind(component="issuer-secret", secret=str(ref))
        self._version = ""

    async def load(self) -> CA:
        """Read and check the Secret now; CaError says what is missing or wrong."""
        version, values = await self._read()
        ca = ca_from_secret(values, self.ref, self._trust_domain)
        self._version = version
        return ca

    async def _read(self) -> tuple[str, dict[str, bytes]]:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            secret = await self._api.read_namespaced_secret(self.ref.name, self.ref.namespace,
                                                            _request_timeout=self._timeout)
        except ApiException as e:
            if e.status == 404:
                raise CaError(f"{self.ref} not found: create it with the issuer certificate (tls.crt), "
                              f"its key (tls.key) and the trust anchors (ca.crt); see identity/README.md") from None
            raise CaError(f"cannot read {self.ref}: the API server answered {e.status} {e.reason}") from None
        except (OSError, TimeoutError, aiohttp.ClientError) as e:
            raise CaError(f"cannot read {self.ref}: cannot reach the API server: {str(e) or type(e).__name__}") from None
        return str(secret.metadata.resource_version or ""), decode_secret_data(secret.data, self.ref)

    async def follow(self, on_change: Callable[[CA], None], *, refresh: float = 30.0) -> None:
        """Re-read every `refresh` seconds; call `on_change` with each new valid CA. Runs until cancelled.

        Each problem is logged once per Secret version (or once per kind of read failure).
        """
        last_problem = ""
        while True:
            await asyncio.sleep(refresh)
            try:
                version, values = await self._read()
                if version == self._version:
                    continue
                ca = ca_from_secret(values, self.ref, self._trust_domain)
            except CaError as e:
                if str(e) != last_problem:
                    self._log.error("issuer.reload_failed", error=str(e), keeping="the last good issuer")
                    last_problem = str(e)
                continue
            last_problem = ""
            self._version = version
            self._log.info("issuer.rotated", issuer=ca.issuer_cert.subject.rfc4514_string(),
                           not_after=ca.issuer_cert.not_valid_after_utc.isoformat(), resource_version=version)
            on_change(ca)
