"""SPIFFE ids of workloads: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` (pure)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidIdentity

# DNS-1123 labels (namespaces) and subdomains (service accounts), as Kubernetes.
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_NAME_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_TRUST_DOMAIN_RE = re.compile(r"^[a-z0-9._-]+$")


@dataclass(frozen=True)
class WorkloadIdentity:
    """Who a workload is: its namespace and service account."""

    namespace: str
    service_account: str

    def spiffe_id(self, trust_domain: str) -> str:
        return f"spiffe://{trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


def parse_spiffe_id(uri: str, trust_domain: str) -> WorkloadIdentity:
    """Parse a workload SPIFFE id of `trust_domain`; InvalidIdentity names what is wrong."""
    prefix = "spiffe://"
    if not uri.startswith(prefix):
        raise InvalidIdentity(f"identity {uri!r} is not a SPIFFE id (must start with {prefix!r})")
    rest = uri[len(prefix):]
    domain, _, path = rest.partition("/")
    if domain != trust_domain:
        raise InvalidIdentity(f"identity {uri!r} is in trust domain {domain!r}, expected {trust_domain!r}")
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
        raise InvalidIdentity(f"identity {uri!r} must have the form spiffe://{trust_domain}/ns/<namespace>/sa/<service-account>")
    namespace, service_account = parts[1], parts[3]
    if not _NAME_RE.match(namespace) or len(namespace) > 63:
        raise InvalidIdentity(f"identity {uri!r}: namespace {namespace!r} is not a valid name")
    if not _NAME_RE.match(service_account) or len(service_account) > 253:
        raise InvalidIdentity(f"identity {uri!r}: service account {service_account!r} is not a valid name")
    return WorkloadIdentity(namespace, service_account)


def check_trust_domain(trust_domain: str) -> str:
    if not trust_domain or not _TRUST_DOMAIN_RE.match(trust_domain):
        raise InvalidIdentity(f"trust domain {trust_domain!r} is not valid (lowercase letters, digits, '.', '-', '_')")
    return trust_domain
