"""`meshlet check --proxy` in Kubernetes mode: the meshlet-data-plane category.

Pods with a `meshlet-proxy` container (a regular container or a native
sidecar init container) in `-n NS` or every namespace: their proxy container
is ready, and each ready proxy's certificate (its admin `/config_dump` on
the pod IP, port 15000) chains to the trust anchors proxies get (ConfigMap
`meshlet-identity-trust-roots`) through the issuer in the Secret, for the
pod's SPIFFE identity.
"""
from __future__ import annotations

from typing import Any

import aiohttp
from cryptography import x509
from kubernetes_asyncio import client as kclient
from meshlet.controller.config import spiffe_id
from meshlet.controller.local.healthcheck import Category, CheckFailed, SkipCheck
from meshlet.identity.certcheck import Status, verify_leaf

from .check_kube import KubeCheckContext, checker
from .check_kube_mesh import deployments, identity_pems, read_cached

PROXY_CONTAINER = "meshlet-proxy"
PROXY_ADMIN_PORT = 15000


def has_proxy(pod: Any) -> bool:
    spec = pod.spec
    containers = [*(spec.containers or []), *(spec.init_containers or [])] if spec else []
    return any(c.name == PROXY_CONTAINER for c in containers)


def proxy_ready(pod: Any) -> bool:
    st = pod.status
    statuses = [*(st.container_statuses or []), *(st.init_container_statuses or [])] if st else []
    return any(s.name == PROXY_CONTAINER and s.ready for s in statuses)


async def _meshed_pods(ctx: KubeCheckContext) -> list[Any]:
    core = kclient.CoreV1Api(ctx.client())
    ns = ctx.options.data_plane_namespace

    async def load() -> list[Any]:
        pods = await (core.list_namespaced_pod(ns) if ns else core.list_pod_for_all_namespaces())
        return [p for p in pods.items if has_proxy(p)]
    return await read_cached(ctx, "Pods", load)


async def _dp_namespace(ctx: KubeCheckContext) -> None:
    ns = ctx.options.data_plane_namespace
    if ns is None:
        raise SkipCheck()
    await read_cached(ctx, f"namespace {ns}", lambda: kclient.CoreV1Api(ctx.client()).read_namespace(ns))


async def _proxies_ready(ctx: KubeCheckContext) -> None:
    pods = await _meshed_pods(ctx)
    where = f"the {ctx.options.data_plane_namespace} namespace" if ctx.options.data_plane_namespace else "any namespace"
    if not pods:
        raise CheckFailed(f'no "{PROXY_CONTAINER}" containers found in {where}')
    bad = [f"{p.metadata.namespace}/{p.metadata.name}" for p in pods if not proxy_ready(p)]
    if bad:
        raise CheckFailed("proxy not ready: " + ", ".join(bad))


async def _trust_domain(ctx: KubeCheckContext) -> str:
    """The trust domain the control plane runs with (its MESHLET_TRUST_DOMAIN), else cluster.local."""
    dep = (await deployments(ctx)).get("identity")
    containers = dep.spec.template.spec.containers if dep else []
    for c in containers:
        for env in c.env or []:
            if env.name == "MESHLET_TRUST_DOMAIN" and env.value:
                return str(env.value)
    return "cluster.local"


async def _proxy_certs(ctx: KubeCheckContext) -> None:
    pods = [p for p in await _meshed_pods(ctx) if proxy_ready(p) and p.status.pod_ip]
    if not pods:
        raise SkipCheck()  # nothing ready to ask; _proxies_ready says why
    _, issuer_pem, roots = await identity_pems(ctx)
    anchors = x509.load_pem_x509_certificates(roots)
    issuer = x509.load_pem_x509_certificates(issuer_pem)
    trust_domain = await _trust_domain(ctx)
    bad = []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for p in pods:
            where = f"{p.metadata.namespace}/{p.metadata.name}"
            try:
                async with session.get(f"http://{p.status.pod_ip}:{PROXY_ADMIN_PORT}/config_dump") as resp:
                    dump = await resp.json(content_type=None)
            except (OSError, aiohttp.ClientError, ValueError, TimeoutError) as e:
                bad.append(f"{where}: cannot read /config_dump: {e}")
                continue
            pem = (dump.get("identity") or {}).get("cert_pem")
            if not pem:
                bad.append(f"{where}: no certificate yet")
                continue
            chain = x509.load_pem_x509_certificates(pem.encode())
            sa = p.spec.service_account_name or "default"
            result = verify_leaf(chain[0], [*chain[1:], *issuer], anchors,
                                 expected_uri=spiffe_id(trust_domain, p.metadata.namespace, sa))
            if result.status is Status.ERROR:
                bad.append(f"{where}: {result.message}")
    if bad:
        raise CheckFailed("; ".join(bad))


def data_plane_categories() -> list[Category[KubeCheckContext]]:
    return [Category("meshlet-data-plane", (
        checker("data plane namespace exists", "k8s-dp-namespace", _dp_namespace),
        checker("data plane proxies are ready", "dp-proxy-ready", _proxies_ready),
        checker("data plane proxies certificates match CA", "dp-proxy-certs", _proxy_certs),
    ))]
