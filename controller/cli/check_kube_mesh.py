"""`meshlet check` in Kubernetes mode: the control-plane and data-plane categories.

meshlet-config (CRDs, ClusterRoles, webhook configuration), meshlet-existence
(namespace, ServiceAccounts, Deployments available, pods ready),
meshlet-identity (the issuer Secret and trust-roots ConfigMap, checked by
`meshlet.identity.certcheck` like local mode), meshlet-webhooks (serving
certificate valid, for the Service's name, under the caBundle),
meshlet-version (CLI = control plane). `--proxy`'s meshlet-data-plane is in
`check_kube_proxy`.
"""
from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.exceptions import ApiException
from meshlet.controller.local.healthcheck import (
    Category,
    CheckFailed,
    CheckWarning,
    SkipCheck,
)
from meshlet.controller.model.crd import meshlet_version, render_crds
from meshlet.identity.certcheck import MIN_REMAINING, Status, check_ca_pem, verify_leaf

from .check_kube import CheckFn, KubeCheckContext, api_error, checker
from .install_certs import webhook_dns_names
from .install_manifests import (
    COMPONENTS,
    INJECTOR_TLS_SECRET,
    ISSUER_SECRET,
    NAMESPACE_LABEL,
    TRUST_ROOTS_CONFIGMAP,
    TRUST_ROOTS_KEY,
    VERSION_LABEL,
    WEBHOOK_NAME,
)


def _name(ctx: KubeCheckContext, suffix: str) -> str:
    return f"meshlet-{ctx.ns}-{suffix}"


async def read_cached(ctx: KubeCheckContext, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await ctx.cached(what, call)
    except ApiException as e:
        raise api_error(what, e) from None


# --- meshlet-config ------------------------------------------------------

async def _crds(ctx: KubeCheckContext) -> dict[str, Any]:
    ext = kclient.ApiextensionsV1Api(ctx.client())
    found = await read_cached(ctx, "CustomResourceDefinitions", ext.list_custom_resource_definition)
    return {c.metadata.name: c for c in found.items}


async def _crds_exist(ctx: KubeCheckContext) -> None:
    have = await _crds(ctx)
    missing = [c["metadata"]["name"] for c in render_crds() if c["metadata"]["name"] not in have]
    if missing:
        raise CheckFailed(f"missing CustomResourceDefinitions: {', '.join(missing)} (meshlet install --crds)")


async def _crds_established(ctx: KubeCheckContext) -> None:
    have = await _crds(ctx)
    bad = []
    for want in render_crds():
        crd = have.get(want["metadata"]["name"])
        if crd is None:
            continue  # reported by _crds_exist
        conds = {c.type: c.status for c in (crd.status.conditions or [])} if crd.status else {}
        if conds.get("Established") != "True":
            bad.append(want["metadata"]["name"])
    if bad:
        raise CheckFailed(f"not Established: {', '.join(bad)}")


async def _cluster_roles(ctx: KubeCheckContext) -> None:
    rbac = kclient.RbacAuthorizationV1Api(ctx.client())
    missing = []
    for c in COMPONENTS:
        for kind, read in (("ClusterRole", rbac.read_cluster_role), ("ClusterRoleBinding", rbac.read_cluster_role_binding)):
            try:
                await read(_name(ctx, c))
            except ApiException as e:
                if e.status != 404:
                    raise api_error(f"reading {kind} {_name(ctx, c)}", e) from None
                missing.append(f"{kind} {_name(ctx, c)}")
    if missing:
        raise CheckFailed("missing: " + ", ".join(missing))


async def _webhook_config(ctx: KubeCheckContext) -> Any:
    reg = kclient.AdmissionregistrationV1Api(ctx.client())
    name = _name(ctx, "proxy-injector")
    cfg = await read_cached(ctx, f"MutatingWebhookConfiguration {name}",
                      lambda: reg.read_mutating_webhook_configuration(name))
    hook = next((w for w in cfg.webhooks or [] if w.name == WEBHOOK_NAME), None)
    if hook is None:
        raise CheckFailed(f"MutatingWebhookConfiguration {name} has no webhook {WEBHOOK_NAME}")
    return hook


async def _webhook_exists(ctx: KubeCheckContext) -> None:
    hook = await _webhook_config(ctx)
    svc = hook.client_config.service
    if svc is None or svc.namespace != ctx.ns or svc.name != "meshlet-injector":
        raise CheckFailed(f"webhook {WEBHOOK_NAME} does not point at the Service meshlet-injector in {ctx.ns}")


# --- meshlet-existence ---------------------------------------------------

async def _namespace(ctx: KubeCheckContext) -> None:
    await read_cached(ctx, f"namespace {ctx.ns}", lambda: kclient.CoreV1Api(ctx.client()).read_namespace(ctx.ns))


async def _service_accounts(ctx: KubeCheckContext) -> None:
    core = kclient.CoreV1Api(ctx.client())
    missing = []
    for c in COMPONENTS:
        try:
            await core.read_namespaced_service_account(f"meshlet-{c}", ctx.ns)
        except ApiException as e:
            if e.status != 404:
                raise api_error(f"reading ServiceAccount meshlet-{c}", e) from None
            missing.append(f"meshlet-{c}")
    if missing:
        raise CheckFailed(f"missing ServiceAccounts in {ctx.ns}: {', '.join(missing)}")


async def deployments(ctx: KubeCheckContext) -> dict[str, Any]:
    apps = kclient.AppsV1Api(ctx.client())

    async def load() -> dict[str, Any]:
        out = {}
        for c in COMPONENTS:
            try:
                out[c] = await apps.read_namespaced_deployment(f"meshlet-{c}", ctx.ns)
            except ApiException as e:
                if e.status != 404:
                    raise
        return out
    return await read_cached(ctx, "Deployments", load)


async def _deployments_exist(ctx: KubeCheckContext) -> None:
    have = await deployments(ctx)
    missing = [f"meshlet-{c}" for c in COMPONENTS if c not in have]
    if missing:
        raise CheckFailed(f"missing Deployments in {ctx.ns}: {', '.join(missing)}")


async def _deployments_available(ctx: KubeCheckContext) -> None:
    have = await deployments(ctx)
    bad = []
    for c, dep in have.items():
        st = dep.status
        conds = {x.type: x.status for x in (st.conditions or [])} if st else {}
        if conds.get("Available") != "True" or not (st and st.available_replicas):
            want = dep.spec.replicas if dep.spec.replicas is not None else 1
            bad.append(f"meshlet-{c} ({(st.available_replicas or 0) if st else 0}/{want} available)")
    if bad:
        raise CheckFailed("not available: " + ", ".join(bad))


async def _pods_ready(ctx: KubeCheckContext) -> None:
    pods = await kclient.CoreV1Api(ctx.client()).list_namespaced_pod(
        ctx.ns, label_selector=f"{NAMESPACE_LABEL}={ctx.ns}")
    if not pods.items:
        raise SkipCheck()  # no pods at all: the Deployments' availability check says why
    bad = []
    for p in pods.items:
        conds = {c.type: c.status for c in (p.status.conditions or [])} if p.status else {}
        if (p.status.phase if p.status else None) != "Running" or conds.get("Ready") != "True":
            bad.append(f"{p.metadata.name} ({p.status.phase if p.status else 'no status'})")
    if bad:
        raise CheckFailed("not ready: " + ", ".join(bad))


# --- meshlet-identity ----------------------------------------------------

async def identity_pems(ctx: KubeCheckContext) -> tuple[bytes, bytes, bytes]:
    """(anchors from the Secret's ca.crt, issuer certificate, anchors from the trust-roots ConfigMap)."""
    core = kclient.CoreV1Api(ctx.client())
    secret = await read_cached(ctx, f"Secret {ISSUER_SECRET}", lambda: core.read_namespaced_secret(ISSUER_SECRET, ctx.ns))
    cm = await read_cached(ctx, f"ConfigMap {TRUST_ROOTS_CONFIGMAP}",
                     lambda: core.read_namespaced_config_map(TRUST_ROOTS_CONFIGMAP, ctx.ns))
    data = secret.data or {}
    for key in ("tls.crt", "ca.crt"):
        if not data.get(key):
            raise CheckFailed(f"Secret {ISSUER_SECRET} has no {key}")
    roots = (cm.data or {}).get(TRUST_ROOTS_KEY, "")
    return base64.b64decode(data["ca.crt"]), base64.b64decode(data["tls.crt"]), roots.encode()


def _cert(select: Callable[[str], bool]) -> CheckFn:
    async def check(ctx: KubeCheckContext) -> None:
        anchors, issuer, _ = await identity_pems(ctx)
        results = [r for r in check_ca_pem(anchors, issuer) if select(r.name) or r.name.endswith("can be read")]
        errors = [r.message for r in results if r.status is Status.ERROR]
        if errors:
            raise CheckFailed("; ".join(errors))
        warnings = [r.message for r in results if r.status is Status.WARNING]
        if warnings:
            raise CheckWarning("; ".join(warnings))
    return check


async def _roots_match(ctx: KubeCheckContext) -> None:
    anchors, _, roots = await identity_pems(ctx)
    if not roots:
        raise CheckFailed(f"ConfigMap {TRUST_ROOTS_CONFIGMAP} has no {TRUST_ROOTS_KEY}")
    secret_set = {c.fingerprint(c.signature_hash_algorithm) for c in x509.load_pem_x509_certificates(anchors)}  # type: ignore[arg-type]
    cm_set = {c.fingerprint(c.signature_hash_algorithm) for c in x509.load_pem_x509_certificates(roots)}  # type: ignore[arg-type]
    if not secret_set <= cm_set:
        raise CheckFailed(f"the trust anchors proxies get ({TRUST_ROOTS_CONFIGMAP}) do not include the issuer's "
                          f"anchor ({ISSUER_SECRET} ca.crt): proxies would reject each other's certificates")


# --- meshlet-webhooks ----------------------------------------------------

async def _webhook_cert(ctx: KubeCheckContext) -> None:
    hook = await _webhook_config(ctx)
    secret = await read_cached(ctx, f"Secret {INJECTOR_TLS_SECRET}",
                         lambda: kclient.CoreV1Api(ctx.client()).read_namespaced_secret(INJECTOR_TLS_SECRET, ctx.ns))
    crt = base64.b64decode((secret.data or {}).get("tls.crt", ""))
    if not crt:
        raise CheckFailed(f"Secret {INJECTOR_TLS_SECRET} has no tls.crt")
    leaf = x509.load_pem_x509_certificate(crt)
    bundle = hook.client_config.ca_bundle or ""
    cas = x509.load_pem_x509_certificates(base64.b64decode(bundle)) if bundle else []
    if not cas:
        raise CheckFailed(f"webhook {WEBHOOK_NAME} has no caBundle")
    result = verify_leaf(leaf, [], cas)
    if result.status is Status.ERROR:
        raise CheckFailed(f"the injector's serving certificate does not verify against the webhook's caBundle: {result.message}")
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    want = webhook_dns_names(ctx.ns)[0]
    if want not in names:
        raise CheckFailed(f"the serving certificate is for {names}, not {want}")
    ctx.cache["webhook-leaf"] = leaf


async def _webhook_expiry(ctx: KubeCheckContext) -> None:
    leaf = ctx.cache.get("webhook-leaf")
    if leaf is None:
        raise SkipCheck()
    left = leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    if left < MIN_REMAINING:
        raise CheckWarning(f"the injector's serving certificate expires in {left.days} days "
                           f"({leaf.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ})")


# --- meshlet-version -----------------------------------------------------

async def _cp_version(ctx: KubeCheckContext) -> None:
    have = await deployments(ctx)
    versions = {c: (d.metadata.labels or {}).get(VERSION_LABEL) for c, d in have.items()}
    if not versions or not all(versions.values()):
        raise CheckFailed(f"no {VERSION_LABEL} label on the control-plane Deployments")
    ctx.cache["cp-versions"] = versions


async def _versions_match(ctx: KubeCheckContext) -> None:
    versions = ctx.cache.get("cp-versions")
    if not versions:
        raise SkipCheck()
    cli = meshlet_version()
    other = {f"meshlet-{c}": v for c, v in versions.items() if v != cli}
    if other:
        raise CheckWarning(f"the CLI is {cli}; control plane: " + ", ".join(f"{k} {v}" for k, v in other.items()))


def _anchor(suffix: str) -> Callable[[str], bool]:
    return lambda name: name.startswith("trust anchor") and name.endswith(suffix)


def _issuer(suffix: str) -> Callable[[str], bool]:
    return lambda name: name.startswith("issuer") and name.endswith(suffix)


def mesh_categories() -> list[Category[KubeCheckContext]]:
    return [
        Category("meshlet-existence", (
            checker("control plane namespace exists", "k8s-cp-namespace", _namespace, fatal=True),
            checker("control plane ServiceAccounts exist", "k8s-cp-serviceaccounts", _service_accounts),
            checker("control plane Deployments exist", "k8s-cp-deployments", _deployments_exist),
            checker("control plane Deployments are available", "k8s-cp-available", _deployments_available),
            checker("control plane pods are ready", "k8s-cp-pods", _pods_ready),
        )),
        Category("meshlet-config", (
            checker("control plane CustomResourceDefinitions exist", "k8s-crds", _crds_exist),
            checker("control plane CustomResourceDefinitions are Established", "k8s-crds", _crds_established),
            checker("control plane ClusterRoles and ClusterRoleBindings exist", "k8s-rbac", _cluster_roles),
            checker("control plane MutatingWebhookConfiguration exists", "k8s-webhook-config", _webhook_exists),
        )),
        Category("meshlet-identity", (
            checker("trust anchors use supported crypto algorithm", "identity-algorithm", _cert(_anchor("uses a supported algorithm"))),
            checker("trust anchors are within their validity period", "identity-validity", _cert(_anchor("is valid"))),
            checker("trust anchors are valid for at least 60 days", "identity-expiry",
               _cert(_anchor("at least 60 days")), warning=True),
            checker("issuer certificate uses supported crypto algorithm", "identity-algorithm",
               _cert(_issuer("uses a supported algorithm"))),
            checker("issuer certificate is within its validity period", "identity-validity", _cert(_issuer("is valid"))),
            checker("issuer certificate is valid for at least 60 days", "identity-expiry",
               _cert(_issuer("at least 60 days")), warning=True),
            checker("issuer certificate is issued by the trust anchor", "identity-issuer",
               _cert(_issuer("signed by the trust anchor"))),
            checker("proxies get the issuer's trust anchor", "k8s-trust-roots", _roots_match),
        )),
        Category("meshlet-webhooks", (
            checker("proxy-injector webhook has valid cert", "k8s-webhook-cert", _webhook_cert),
            checker("proxy-injector cert is valid for at least 60 days", "k8s-webhook-cert", _webhook_expiry, warning=True),
        )),
        Category("meshlet-version", (
            checker("can retrieve the control plane version", "k8s-version-match", _cp_version),
            checker("control plane and cli versions match", "k8s-version-match", _versions_match, warning=True),
        )),
    ]
