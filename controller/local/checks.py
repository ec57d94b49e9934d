"""The checks of `meshlet check` for local mode (the table; the runner is `healthcheck`).

Categories: meshlet-local-runtime (root, tools, bridge), meshlet-control-plane
(destination/identity/runtime processes and readiness), meshlet-identity
(trust anchor and issuer, via `meshlet.identity.certcheck`), meshlet-data-plane
(each meshed pod's proxy /ready and certificate).
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from meshlet.controller.config import LocalConfig, spiffe_id
from meshlet.controller.local import controlplane as cp
from meshlet.controller.local import netns
from meshlet.controller.local.healthcheck import (
    Category,
    Checker,
    CheckFailed,
    CheckWarning,
    SkipCheck,
)
from meshlet.controller.local.names import pod_names
from meshlet.controller.local.probe import http_ok
from meshlet.controller.local.resources import PROXY_ANNOTATION
from meshlet.controller.model import Pod
from meshlet.identity.certcheck import CertCheck, Status, check_ca_pem, verify_leaf

TOOLS = ("ip", "iptables-restore", "setpriv")


@dataclass
class CheckContext:
    cfg: LocalConfig
    _pods: list[Pod] | None = None
    _ca: list[CertCheck] | None = None
    _running: dict[str, int] | None = None
    """Looked up once per `meshlet check` run and shared by the checks."""

    @property
    def identity_dir(self) -> Path:
        return self.cfg.state_dir / "identity"

    async def meshed_pods(self) -> list[Pod]:
        return [p for p in await self.pods() if p.metadata.annotations.get(PROXY_ANNOTATION) == "injected"]

    async def pods(self) -> list[Pod]:
        if self._pods is None:
            from meshlet.controller.store import StoreError, open_local_store

            if not self.cfg.db_path.exists():
                raise CheckFailed(f"no store at {self.cfg.db_path} (run meshlet up)")
            store = open_local_store(self.cfg, create=False)
            try:
                pods, _ = await store.list("Pod")
            except StoreError as e:
                raise CheckFailed(f"cannot read pods from the store: {e}") from None
            finally:
                await store.close()
            self._pods = pods  # type: ignore[assignment]
        return self._pods

    def ca_checks(self) -> list[CertCheck]:
        if self._ca is None:
            try:
                anchors = (self.identity_dir / "ca.crt").read_bytes()
                issuer = (self.identity_dir / "issuer.crt").read_bytes()
            except OSError as e:
                self._ca = [CertCheck("trust anchors can be read", Status.ERROR, str(e))]
            else:
                self._ca = check_ca_pem(anchors, issuer)
        return self._ca

    def running(self) -> dict[str, int]:
        if self._running is None:
            self._running = cp.find_running(self.cfg)
        return self._running


# --- meshlet-local-runtime -----------------------------------------------

async def _root(ctx: CheckContext) -> None:
    if os.geteuid() != 0:
        raise CheckFailed("meshlet check must run as root for local mode (it inspects network namespaces)")


async def _tools(ctx: CheckContext) -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise CheckFailed(f"not found on PATH: {', '.join(missing)} (Debian: iproute2, iptables, util-linux)")


async def _state(ctx: CheckContext) -> None:
    if not ctx.cfg.db_path.exists():
        raise CheckFailed(f"no store at {ctx.cfg.db_path}: the mesh was never started with this state dir")


async def _bridge(ctx: CheckContext) -> None:
    bridge = ctx.cfg.bridge
    if not await netns.link_exists(bridge):
        raise CheckFailed(f"bridge {bridge} does not exist (run meshlet up)")
    _, out = await netns.run("ip", "-o", "-4", "addr", "show", "dev", bridge, check=False)
    want = f"{ctx.cfg.gateway_ip}/{ctx.cfg.pod_cidr.prefixlen}"
    if want not in out:
        raise CheckFailed(f"bridge {bridge} lacks the gateway address {want}")


async def _pod_netns(ctx: CheckContext) -> None:
    pods = await ctx.pods()
    if not pods:
        raise SkipCheck()
    missing = [f"{p.namespace}/{p.name}" for p in pods
               if not (netns.RUN_NETNS / pod_names(ctx.cfg.netns_prefix, p.namespace or "default", p.name).netns).exists()]
    if missing:
        raise CheckFailed("no network namespace for pods: " + ", ".join(missing))


# --- meshlet-control-plane -----------------------------------------------

def _running(name: str) -> Callable[[CheckContext], Awaitable[None]]:
    async def check(ctx: CheckContext) -> None:
        if name not in ctx.running():
            raise CheckFailed(f"no {name} process for state dir {ctx.cfg.state_dir} (run meshlet up)")
    return check


def _ready(name: str) -> Callable[[CheckContext], Awaitable[None]]:
    async def check(ctx: CheckContext) -> None:
        comp = next(c for c in cp.components(ctx.cfg) if c.name == name)
        running = ctx.running()
        if name not in running:
            raise CheckFailed(f"{name} is not running")
        if comp.admin is None:
            ready = ctx.cfg.state_dir / cp.RUNTIME_READY
            if not ready.exists() or ready.read_text().strip() != str(running[name]):
                raise CheckFailed(f"{name} has not reported ready ({ready}); see {comp.log}")
            return
        host, port = comp.admin
        if not await http_ok(host, port, "/ready", timeout=3.0):
            raise CheckFailed(f"http://{host}:{port}/ready does not answer 200; see {comp.log}")
    return check


# --- meshlet-identity ----------------------------------------------------

def _cert(select: Callable[[str], bool], *, need_any: bool = True) -> Callable[[CheckContext], Awaitable[None]]:
    async def check(ctx: CheckContext) -> None:
        results = ctx.ca_checks()
        if _unreadable(results):
            raise SkipCheck()  # reported once, by _ca_readable
        mine = [r for r in results if select(r.name)]
        if not mine and need_any:
            raise CheckFailed("no such certificate check ran")
        errors = [r.message for r in mine if r.status is Status.ERROR]
        if errors:
            raise CheckFailed("; ".join(errors))
        warnings = [r.message for r in mine if r.status is Status.WARNING]
        if warnings:
            raise CheckWarning("; ".join(warnings))
    return check


def _unreadable(results: list[CertCheck]) -> list[CertCheck]:
    return [r for r in results if r.name.endswith("can be read") and r.status is Status.ERROR]


async def _ca_readable(ctx: CheckContext) -> None:
    bad = _unreadable(ctx.ca_checks())
    if bad:
        raise CheckFailed("; ".join(r.message for r in bad))


def _anchor(suffix: str) -> Callable[[str], bool]:
    return lambda name: name.startswith("trust anchor") and name.endswith(suffix)


def _issuer(suffix: str) -> Callable[[str], bool]:
    return lambda name: name.startswith("issuer") and name.endswith(suffix)


# --- meshlet-data-plane --------------------------------------------------

async def _proxies_ready(ctx: CheckContext) -> None:
    pods = await ctx.meshed_pods()
    if not pods:
        raise SkipCheck()
    bad = []
    for p in pods:
        ip = p.status.pod_ip if p.status else None
        if not ip or not await http_ok(ip, ctx.cfg.proxy_ports.admin, "/ready", timeout=3.0):
            bad.append(f"{p.namespace}/{p.name} ({ip or 'no IP'})")
    if bad:
        raise CheckFailed("proxy /ready is not 200 for: " + ", ".join(bad))


async def _fetch_config_dump(ip: str, port: int) -> dict[str, Any]:
    import asyncio

    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 3.0)
    try:
        writer.write(f"GET /config_dump HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    if b" 200" not in status_line:
        raise ValueError(f"answered {status_line.decode(errors='replace')!r}")
    return json.loads(body)


async def _proxy_certs(ctx: CheckContext) -> None:
    pods = await ctx.meshed_pods()
    if not pods:
        raise SkipCheck()
    try:
        anchors = x509.load_pem_x509_certificates((ctx.identity_dir / "ca.crt").read_bytes())
        issuer = x509.load_pem_x509_certificates((ctx.identity_dir / "issuer.crt").read_bytes())
    except (OSError, ValueError) as e:
        raise CheckFailed(f"cannot read the trust anchor/issuer: {e}") from None
    bad = []
    for p in pods:
        ip = p.status.pod_ip if p.status else None
        where = f"{p.namespace}/{p.name}"
        if not ip:
            bad.append(f"{where}: no IP")
            continue
        try:
            dump = await _fetch_config_dump(ip, ctx.cfg.proxy_ports.admin)
            ident = dump.get("identity") or {}
            pem = ident.get("cert_pem")
            if not pem:
                bad.append(f"{where}: no certificate yet ({ident.get('last_error') or 'not issued'})")
                continue
            leaf = x509.load_pem_x509_certificates(pem.encode())
        except (OSError, ValueError, TimeoutError) as e:
            bad.append(f"{where}: cannot read /config_dump: {e}")
            continue
        expected = spiffe_id(ctx.cfg.trust_domain, p.namespace, p.spec.service_account_name or "default")
        result = verify_leaf(leaf[0], [*leaf[1:], *issuer], anchors, expected_uri=expected)
        if result.status is Status.ERROR:
            bad.append(f"{where}: {result.message}")
    if bad:
        raise CheckFailed("; ".join(bad))


def local_categories() -> list[Category[CheckContext]]:
    return [
        Category("meshlet-local-runtime", (
            Checker("running as root", "local-root", _root, fatal=True),
            Checker("ip, iptables-restore and setpriv are available", "local-tools", _tools, fatal=True),
            Checker("state directory holds a store", "local-state", _state, fatal=True),
            Checker("bridge is up with the gateway address", "local-bridge", _bridge),
            Checker("every pod has its network namespace", "local-pod-netns", _pod_netns),
        )),
        Category("meshlet-control-plane", tuple(
            c for name in ("destination", "identity", "runtime") for c in (
                Checker(f"{name} process is running", f"cp-{name}-running", _running(name)),
                Checker(f"{name} is ready", f"cp-{name}-ready", _ready(name)),
            ))),
        Category("meshlet-identity", (
            Checker("trust anchor and issuer certificates can be read", "identity-read", _ca_readable),
            Checker("trust anchors use supported crypto algorithm", "identity-algorithm",
                    _cert(_anchor("uses a supported algorithm"))),
            Checker("trust anchors are CAs", "identity-ca", _cert(_anchor("is a CA"))),
            Checker("trust anchors are within their validity period", "identity-validity",
                    _cert(_anchor("is valid"))),
            Checker("trust anchors are valid for at least 60 days", "identity-expiry",
                    _cert(_anchor("at least 60 days")), warning=True),
            Checker("issuer certificate uses supported crypto algorithm", "identity-algorithm",
                    _cert(_issuer("uses a supported algorithm"))),
            Checker("issuer certificate is within its validity period", "identity-validity",
                    _cert(_issuer("is valid"))),
            Checker("issuer certificate is valid for at least 60 days", "identity-expiry",
                    _cert(_issuer("at least 60 days")), warning=True),
            Checker("issuer certificate is issued by the trust anchor", "identity-issuer",
                    _cert(_issuer("signed by the trust anchor"))),
        )),
        Category("meshlet-data-plane", (
            Checker("data plane proxies are ready", "dp-proxy-ready", _proxies_ready),
            Checker("data plane proxies certificates are issued under the current trust anchor",
                    "dp-proxy-certs", _proxy_certs),
        )),
    ]
