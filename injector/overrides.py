"""Per-pod overrides of the injected proxy, read from the pod's annotations (pure).

Three spellings are honoured for each setting, first found wins:
meshlet's own (`config.meshlet.io/*`), Istio's (`traffic.sidecar.istio.io/*`,
`sidecar.istio.io/*`, `proxy.istio.io/config`) and Linkerd's (`config.linkerd.io/*`).
Port and CIDR lists are the union of every spelling present. A malformed value
is an OverrideError naming the annotation.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace

from meshlet.controller.local.proxyconfig import ANNOTATION as PROXY_CONFIG_ANNOTATION
from meshlet.controller.local.proxyconfig import ProxyConfigError, parse_annotation
from meshlet.injector.config import (
    ConfigError,
    InjectorConfig,
    Resources,
    check_quantity,
)
from meshlet.proxy.init.iptables import (
    RuleError,
    parse_cidrs,
    parse_include_cidrs,
    parse_ports,
)

EXCLUDE_INBOUND_PORTS = ("config.meshlet.io/skip-inbound-ports", "traffic.sidecar.istio.io/excludeInboundPorts",
                         "config.linkerd.io/skip-inbound-ports")
EXCLUDE_OUTBOUND_PORTS = ("config.meshlet.io/skip-outbound-ports", "traffic.sidecar.istio.io/excludeOutboundPorts",
                          "config.linkerd.io/skip-outbound-ports")
EXCLUDE_OUTBOUND_CIDRS = ("config.meshlet.io/skip-subnets", "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                          "config.linkerd.io/skip-subnets")
INCLUDE_OUTBOUND_CIDRS = ("traffic.sidecar.istio.io/includeOutboundIPRanges",)
CPU_REQUEST = ("config.meshlet.io/proxy-cpu-request", "sidecar.istio.io/proxyCPU",
               "config.linkerd.io/proxy-cpu-request")
MEMORY_REQUEST = ("config.meshlet.io/proxy-memory-request", "sidecar.istio.io/proxyMemory",
                  "config.linkerd.io/proxy-memory-request")
CPU_LIMIT = ("config.meshlet.io/proxy-cpu-limit", "sidecar.istio.io/proxyCPULimit",
             "config.linkerd.io/proxy-cpu-limit")
MEMORY_LIMIT = ("config.meshlet.io/proxy-memory-limit", "sidecar.istio.io/proxyMemoryLimit",
                "config.linkerd.io/proxy-memory-limit")
PROXY_IMAGE = ("config.meshlet.io/proxy-image", "sidecar.istio.io/proxyImage", "config.linkerd.io/proxy-image")
LOG_LEVEL = ("config.meshlet.io/proxy-log-level", "sidecar.istio.io/logLevel", "config.linkerd.io/proxy-log-level")
NATIVE_SIDECAR = ("config.meshlet.io/proxy-enable-native-sidecar", "sidecar.istio.io/nativeSidecar",
                  "config.linkerd.io/proxy-enable-native-sidecar")
LOG_LEVELS = ("trace", "debug", "info", "warning", "warn", "error", "critical", "off")


INHERITED_PREFIXES = ("config.meshlet.io/", "config.linkerd.io/")
"""Namespace annotations with these prefixes apply to the namespace's pods unless a pod sets the
same key itself (Linkerd's inheritance); Istio's keys are per pod only, as in Istio."""


def inherit(namespace_annotations: Mapping[str, str], pod_annotations: Mapping[str, str]) -> dict[str, str]:
    """The annotations overrides are read from: the namespace's config keys under the pod's own."""
    inherited = {str(k): str(v) for k, v in namespace_annotations.items() if str(k).startswith(INHERITED_PREFIXES)}
    return {**inherited, **{str(k): str(v) for k, v in pod_annotations.items()}}


class OverrideError(ValueError):
    """An override annotation has a value we cannot use (the message names it)."""


@dataclass(frozen=True)
class Overrides:
    """The proxy settings of one pod: the injector's defaults with its annotations applied."""

    proxy_image: str
    resources: Resources
    log_level: str
    native_sidecar: bool
    concurrency: int | None = None
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_cidrs: tuple[ipaddress.IPv4Network, ...] = ()
    include_outbound_cidrs: tuple[ipaddress.IPv4Network, ...] | None = None
    """None: every destination is captured (Istio's "*")."""

    def init_args(self, proxy_gid: int) -> list[str]:
        """`python -m meshlet.proxy.init` arguments writing these capture rules."""
        args = ["--proxy-gid", str(proxy_gid)]
        if self.exclude_inbound_ports:
            args += ["--exclude-inbound-ports", ",".join(map(str, self.exclude_inbound_ports))]
        if self.exclude_outbound_ports:
            args += ["--exclude-outbound-ports", ",".join(map(str, self.exclude_outbound_ports))]
        if self.exclude_outbound_cidrs:
            args += ["--exclude-outbound-cidrs", ",".join(map(str, self.exclude_outbound_cidrs))]
        if self.include_outbound_cidrs is not None:
            args += ["--include-outbound-cidrs", ",".join(map(str, self.include_outbound_cidrs))]
        return args


def _first(annotations: Mapping[str, str], keys: tuple[str, ...]) -> tuple[str, str] | None:
    for key in keys:
        if key in annotations:
            return key, str(annotations[key])
    return None


def _ports(annotations: Mapping[str, str], keys: tuple[str, ...]) -> tuple[int, ...]:
    out: list[int] = []
    for key in keys:
        if key in annotations:
            try:
                out += parse_ports(str(annotations[key]))
            except RuleError as e:
                raise OverrideError(f"annotation {key}: {e}") from None
    return tuple(dict.fromkeys(out))


def _cidrs(annotations: Mapping[str, str], keys: tuple[str, ...]) -> tuple[ipaddress.IPv4Network, ...]:
    out: list[ipaddress.IPv4Network] = []
    for key in keys:
        if key in annotations:
            try:
                out += parse_cidrs(str(annotations[key]))
            except RuleError as e:
                raise OverrideError(f"annotation {key}: {e}") from None
    return tuple(dict.fromkeys(out))


def _quantity(annotations: Mapping[str, str], keys: tuple[str, ...], default: str | None) -> str | None:
    found = _first(annotations, keys)
    if found is None:
        return default
    try:
        return check_quantity(f"annotation {found[0]}", found[1])
    except ConfigError as e:
        raise OverrideError(str(e)) from None


def _bool(annotations: Mapping[str, str], keys: tuple[str, ...], default: bool) -> bool:
    found = _first(annotations, keys)
    if found is None:
        return default
    v = found[1].strip().lower()
    if v not in ("true", "false", "enabled", "disabled"):
        raise OverrideError(f'annotation {found[0]}={found[1]!r}: must be "true" or "false"')
    return v in ("true", "enabled")


def overrides(cfg: InjectorConfig, annotations: Mapping[str, str]) -> Overrides:
    """The settings of a pod with these annotations (OverrideError names a bad one)."""
    image = _first(annotations, PROXY_IMAGE)
    if image is not None and not image[1].strip():
        raise OverrideError(f"annotation {image[0]}: the proxy image must not be empty")
    level = _first(annotations, LOG_LEVEL)
    if level is not None and level[1].strip().lower() not in LOG_LEVELS:
        raise OverrideError(f"annotation {level[0]}={level[1]!r}: must be one of {', '.join(LOG_LEVELS)}")
    concurrency = None
    if PROXY_CONFIG_ANNOTATION in annotations:
        try:
            concurrency = parse_annotation(str(annotations[PROXY_CONFIG_ANNOTATION]))
        except ProxyConfigError as e:
            raise OverrideError(f"annotation {e}") from None
    include: tuple[ipaddress.IPv4Network, ...] | None = None
    inc = _first(annotations, INCLUDE_OUTBOUND_CIDRS)
    if inc is not None:
        try:
            include = parse_include_cidrs(inc[1])
        except RuleError as e:
            raise OverrideError(f"annotation {inc[0]}: {e}") from None
    d = cfg.resources
    resources = replace(
        d,
        cpu_request=_quantity(annotations, CPU_REQUEST, d.cpu_request),
        memory_request=_quantity(annotations, MEMORY_REQUEST, d.memory_request),
        cpu_limit=_quantity(annotations, CPU_LIMIT, d.cpu_limit),
        memory_limit=_quantity(annotations, MEMORY_LIMIT, d.memory_limit),
    )
    return Overrides(
        proxy_image=image[1].strip() if image else cfg.proxy_image,
        resources=resources,
        log_level=level[1].strip().lower() if level else cfg.log_level,
        native_sidecar=_bool(annotations, NATIVE_SIDECAR, cfg.native_sidecar),
        concurrency=concurrency,
        exclude_inbound_ports=_ports(annotations, EXCLUDE_INBOUND_PORTS),
        exclude_outbound_ports=_ports(annotations, EXCLUDE_OUTBOUND_PORTS),
        exclude_outbound_cidrs=_cidrs(annotations, EXCLUDE_OUTBOUND_CIDRS),
        include_outbound_cidrs=include,
    )
