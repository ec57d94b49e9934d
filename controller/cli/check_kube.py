"""`meshlet check` in Kubernetes mode: the context and the cluster-level categories.

Categories (Linkerd's names with meshlet's prefix): kubernetes-api,
kubernetes-version, pre-kubernetes-setup (`--pre`); the control-plane
categories are in `check_kube_mesh`. Which run: `--pre` → api, version, pre;
default → api, version, meshlet-config, meshlet-existence, meshlet-identity,
meshlet-webhooks, meshlet-version; `--proxy` adds meshlet-data-plane. Checks
use the runner of local mode (`meshlet.controller.local.healthcheck`) and the
same hints file (docs/troubleshooting.md, `k8s-*` anchors).
"""
from __future__ import annotations

import datetime as dt
import email.utils
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client.exceptions import ApiException
from meshlet.controller.local.healthcheck import (
    Category,
    Checker,
    CheckFailed,
    CheckWarning,
    Observer,
    Summary,
    run_checks,
)

MIN_KUBERNETES = (1, 29)
"""Oldest API server supported: native sidecars (restartPolicy Always init containers) are on by default from 1.29."""
MIN_CLIENT = (30, 0)
"""Oldest kubernetes_asyncio the CLI talks to clusters with."""
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
CheckFn = Callable[["KubeCheckContext"], Awaitable[None]]


@dataclass(frozen=True)
class KubeCheckOptions:
    kubeconfig: Path | None = None
    """None: $KUBECONFIG, else ~/.kube/config, else the in-cluster service account."""
    context: str | None = None
    control_plane_namespace: str = "meshlet"
    data_plane_namespace: str | None = None
    """`--proxy`: only this namespace (None: all namespaces)."""
    pre: bool = False
    proxy: bool = False


@dataclass
class KubeCheckContext:
    options: KubeCheckOptions
    api: kclient.ApiClient | None = None
    server_version: tuple[int, int] | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    """Objects read once per run and shared by checks (keyed by what they are)."""

    @property
    def ns(self) -> str:
        return self.options.control_plane_namespace

    def client(self) -> kclient.ApiClient:
        if self.api is None:
            raise CheckFailed("no Kubernetes client (see kubernetes-api)")
        return self.api

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()

    async def cached(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        if key not in self.cache:
            self.cache[key] = await load()
        return self.cache[key]


def api_error(what: str, e: ApiException) -> CheckFailed:
    reason = e.reason or ""
    if e.status == 403:
        return CheckFailed(f"{what}: forbidden for this user (RBAC)")
    if e.status == 404:
        return CheckFailed(f"{what}: not found")
    return CheckFailed(f"{what}: {e.status} {reason}".rstrip())


def guarded(fn: CheckFn) -> CheckFn:
    """Turn API and network errors into a failed check (the runner only knows CheckFailed)."""
    async def check(ctx: KubeCheckContext) -> None:
        try:
            await fn(ctx)
        except ApiException as e:
            raise api_error("Kubernetes API", e) from None
        except (OSError, aiohttp.ClientError, ValueError) as e:
            raise CheckFailed(f"{type(e).__name__}: {e}") from None
    return check


def checker(description: str, hint: str, fn: CheckFn, **kw: Any) -> Checker[KubeCheckContext]:
    return Checker(description, hint, guarded(fn), **kw)


def _kubeconfig_path(opts: KubeCheckOptions) -> Path | None:
    if opts.kubeconfig is not None:
        return opts.kubeconfig
    env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if env:
        return Path(env)
    default = Path.home() / ".kube" / "config"
    return default if default.exists() else None


# --- kubernetes-api ------------------------------------------------------

async def _init_client(ctx: KubeCheckContext) -> None:
    conf = kclient.Configuration()
    path = _kubeconfig_path(ctx.options)
    try:
        if path is not None:
            if not path.exists():
                raise CheckFailed(f"kubeconfig {path} does not exist")
            await kconfig.load_kube_config(config_file=str(path), context=ctx.options.context,
                                           client_configuration=conf, persist_config=False)
        else:
            kconfig.load_incluster_config(client_configuration=conf)
    except kconfig.ConfigException as e:
        where = f"kubeconfig {path}" if path else "in-cluster service account (no kubeconfig found)"
        raise CheckFailed(f"cannot use the {where}: {e}") from None
    ctx.api = kclient.ApiClient(configuration=conf)


async def _query(ctx: KubeCheckContext) -> None:
    try:
        data, _, headers = await kclient.VersionApi(ctx.client()).get_code_with_http_info()
    except ApiException as e:
        raise api_error("GET /version", e) from None
    except OSError as e:
        raise CheckFailed(f"cannot reach the API server at {ctx.client().configuration.host}: {e}") from None
    ctx.cache["version"] = data
    ctx.cache["date"] = headers.get("Date")


# --- kubernetes-version --------------------------------------------------

def parse_version(major: str, minor: str) -> tuple[int, int]:
    """('1', '29+') -> (1, 29); GKE/EKS style suffixes are ignored."""
    digits = "".join(ch for ch in minor if ch.isdigit())
    try:
        return int(major), int(digits)
    except ValueError:
        raise CheckFailed(f"cannot parse the API server version {major}.{minor}") from None


async def _min_version(ctx: KubeCheckContext) -> None:
    info = ctx.cache.get("version")
    if info is None:
        raise CheckFailed("the API server version is unknown (see kubernetes-api)")
    got = parse_version(info.major, info.minor)
    ctx.server_version = got
    if got < MIN_KUBERNETES:
        raise CheckFailed(f"the API server is {info.git_version}; meshlet needs at least "
                          f"v{MIN_KUBERNETES[0]}.{MIN_KUBERNETES[1]}")


async def _client_version(ctx: KubeCheckContext) -> None:
    from importlib.metadata import version

    v = version("kubernetes_asyncio")
    parts = tuple(int(p) for p in v.split(".")[:2] if p.isdigit())
    if parts < MIN_CLIENT:
        raise CheckFailed(f"kubernetes_asyncio {v} is older than {MIN_CLIENT[0]}.{MIN_CLIENT[1]}")


# --- pre-kubernetes-setup ------------------------------------------------

async def _namespace_absent(ctx: KubeCheckContext) -> None:
    try:
        await kclient.CoreV1Api(ctx.client()).read_namespace(ctx.ns)
    except ApiException as e:
        if e.status == 404:
            return
        raise api_error(f"reading namespace {ctx.ns}", e) from None
    raise CheckFailed(f"the control plane namespace {ctx.ns} already exists (meshlet is installed, "
                      f"or pick another with --control-plane-namespace)")


async def can(ctx: KubeCheckContext, verb: str, group: str, resource: str, namespace: str | None) -> bool:
    review = kclient.V1SelfSubjectAccessReview(spec=kclient.V1SelfSubjectAccessReviewSpec(
        resource_attributes=kclient.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                                         namespace=namespace)))
    try:
        result = await kclient.AuthorizationV1Api(ctx.client()).create_self_subject_access_review(review)
    except ApiException as e:
        raise api_error(f"SelfSubjectAccessReview for {verb} {resource}", e) from None
    return bool(result.status and result.status.allowed)


def _can_all(verb: str, resources: tuple[tuple[str, str], ...], *, namespaced: bool) -> Callable[[KubeCheckContext], Awaitable[None]]:
    async def check(ctx: KubeCheckContext) -> None:
        denied = [f"{r}.{g}" if g else r for g, r in resources
                  if not await can(ctx, verb, g, r, ctx.ns if namespaced else None)]
        if denied:
            where = f" in namespace {ctx.ns}" if namespaced else ""
            raise CheckFailed(f"this user cannot {verb} {', '.join(denied)}{where}")
    return check


CLUSTER_RESOURCES = (("", "namespaces"), ("rbac.authorization.k8s.io", "clusterroles"),
                     ("rbac.authorization.k8s.io", "clusterrolebindings"),
                     ("apiextensions.k8s.io", "customresourcedefinitions"),
                     ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"))
NAMESPACED_RESOURCES = (("", "serviceaccounts"), ("", "services"), ("apps", "deployments"),
                        ("", "configmaps"), ("", "secrets"))


async def _clock_skew(ctx: KubeCheckContext) -> None:
    date = ctx.cache.get("date")
    if not date:
        raise CheckWarning("the API server sent no Date header; clock skew unknown")
    server = email.utils.parsedate_to_datetime(date)
    skew = abs(dt.datetime.now(dt.UTC) - server)
    if skew > MAX_CLOCK_SKEW:
        raise CheckWarning(f"local clock and the API server differ by {int(skew.total_seconds())}s "
                           f"(more than {int(MAX_CLOCK_SKEW.total_seconds())}s): certificates may look not yet valid")


def cluster_categories(opts: KubeCheckOptions) -> list[Category[KubeCheckContext]]:
    cats = [
        Category("kubernetes-api", (
            checker("can initialize the client", "k8s-api", _init_client, fatal=True),
            checker("can query the Kubernetes API", "k8s-api", _query, fatal=True),
        )),
        Category("kubernetes-version", (
            checker("is running the minimum Kubernetes API version", "k8s-version", _min_version),
            checker("is running the minimum kubernetes client library version", "k8s-version", _client_version),
        )),
    ]
    if opts.pre:
        cats.append(Category("pre-kubernetes-setup", (
            checker("control plane namespace does not already exist", "pre-ns", _namespace_absent),
            checker("can create non-namespaced resources", "pre-rbac",
                    _can_all("create", CLUSTER_RESOURCES, namespaced=False)),
            checker("can create ServiceAccounts, Services, Deployments, ConfigMaps and Secrets", "pre-rbac",
                    _can_all("create", NAMESPACED_RESOURCES, namespaced=True)),
            checker("can read Secrets", "pre-rbac", _can_all("get", (("", "secrets"),), namespaced=True)),
            checker("no clock skew detected", "pre-clock-skew", _clock_skew, warning=True),
        )))
    return cats


def kube_categories(opts: KubeCheckOptions) -> list[Category[KubeCheckContext]]:
    from .check_kube_mesh import mesh_categories
    from .check_kube_proxy import data_plane_categories

    cats = cluster_categories(opts)
    if not opts.pre:
        cats += mesh_categories()
        if opts.proxy:
            cats += data_plane_categories()
    return cats


async def run_kube_checks(opts: KubeCheckOptions, observer: Observer) -> Summary:
    ctx = KubeCheckContext(opts)
    try:
        return await run_checks(kube_categories(opts), ctx, observer)
    finally:
        await ctx.close()
