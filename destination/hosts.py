"""Host names in traffic resources (pure): canonical form, wildcards, exportTo visibility, Sidecar egress patterns.

Istio's rules, kept:
- a host without a dot is a short name, relative to the namespace of the
  resource that names it (`reviews` in a VirtualService of `bookinfo` is
  `reviews.bookinfo.svc.cluster.local`); `<svc>.<ns>.svc` gets the cluster
  domain appended; anything else is taken literally (`example.com`);
- `*` matches every host, `*.example.com` every host under example.com;
- `exportTo` (default `*`): `*` everywhere, `.` the resource's own namespace,
  otherwise the namespaces listed;
- Sidecar egress hosts are `<ns>/<host>` with ns `*` (any), `.` (the
  Sidecar's own namespace), `~` (none) or a name.
"""
from __future__ import annotations

from collections.abc import Iterable

DEFAULT_DOMAIN = "cluster.local"


def service_fqdn(name: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    return f"{name}.{namespace}.svc.{domain}"


def canonical_host(host: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """The host as the mesh compares it: short names qualified with `namespace`."""
    host = host.strip().lower().rstrip(".")
    if host == "*" or host.startswith("*."):
        return host
    if "." not in host:
        return service_fqdn(host, namespace, domain)
    if host.endswith(".svc") and host.count(".") == 2:
        return f"{host}.{domain}"
    return host


def host_matches(pattern: str, host: str) -> bool:
    """`pattern` (canonical, maybe a wildcard) covers the concrete `host`."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def specificity(pattern: str) -> tuple[int, int]:
    """Sort key: exact hosts before wildcards, longer wildcards before shorter ones."""
    return (0, 0) if not pattern.startswith("*") else (1, -len(pattern))


def visible(export_to: Iterable[str], owner_namespace: str, caller_namespace: str) -> bool:
    """Whether a resource of `owner_namespace` with `export_to` applies to callers in `caller_namespace`."""
    export = list(export_to) or ["*"]
    for entry in export:
        if entry == "*" or entry == caller_namespace:
            return True
        if entry == "." and owner_namespace == caller_namespace:
            return True
    return False


def egress_allows(patterns: Iterable[str], sidecar_namespace: str, host_namespace: str, host: str,
                  domain: str = DEFAULT_DOMAIN) -> bool:
    """Sidecar `egress[].hosts` (`ns/host`) cover `host`, a service or ServiceEntry host of `host_namespace`."""
    for pattern in patterns:
        ns, sep, name = pattern.partition("/")
        if not sep:  # a bare host: any namespace (Istio requires ns/, be lenient)
            ns, name = "*", pattern
        if ns == "~":
            continue
        if ns == ".":
            ns = sidecar_namespace
        if ns != "*" and ns != host_namespace:
            continue
        if name == "*" or host_matches(canonical_host(name, host_namespace, domain), host):
            return True
    return False
