"""What the webhook reads from and writes to the API server (kubernetes_asyncio).

* `Namespaces`: a namespace's labels and annotations, cached for a short TTL (bounded), so a
  burst of pods (a Deployment scaling up) costs one read.
* `TrustRootsPublisher`: copies the trust-roots ConfigMap of the control-plane
  namespace into the namespace of each injected pod (its proxy mounts it from
  there: a pod cannot mount another namespace's ConfigMap), like istiod does
  with `istio-ca-root-cert`, and resyncs the copies (by label) periodically.
* `api_client(kubeconfig)`: from a kubeconfig path, or in-cluster when None.

API errors become `KubeError` (the webhook turns it into "allowed, not injected").
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import structlog
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from meshlet.injector.config import TRUST_ROOTS_CONFIGMAP, TRUST_ROOTS_KEY

log = structlog.get_logger(component="meshlet.injector.kube")
MANAGED_BY = ("app.kubernetes.io/managed-by", "meshlet-injector")
API_TIMEOUT = 4.0
"""Seconds per API call: a review must be answered well inside the webhook's timeoutSeconds (10)."""
MANAGED_BY = ("app.kubernetes.io/managed-by", "meshlet-injector")
API_TIMEOUT = 4.0
"""Seconds per API call: a review must be answered well inside the webhook's timeoutSeconds (10)."""


class KubeError(RuntimeError):
    """An API call failed (the message names the object and the status)."""


async def api_client(kubeconfig: str | None) -> client.ApiClient:
    if kubeconfig:
        try:
            return await config.new_client_from_config(config_file=kubeconfig)
        except Exception as e:  # noqa: BLE001 - the loader raises anything on a malformed file
            raise KubeError(f"kubeconfig {kubeconfig}: not usable ({type(e).__name__}: {e})") from None
    conf = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=conf)
    except config.ConfigException as e:
        raise KubeError(f"not running in a pod ({e}): pass --kubeconfig PATH") from None
    return client.ApiClient(configuration=conf)


async def server_minor_version(api: client.ApiClient) -> tuple[int, int]:
    """(major, minor) of the API server, e.g. (1, 37) (a trailing "+" is ignored)."""
    try:
        info = await client.VersionApi(api).get_code(_request_timeout=API_TIMEOUT)
    except (ApiException, OSError) as e:
        raise KubeError(f"reading the API server version: {e}") from None
    digits = lambda s: int("".join(ch for ch in str(s) if ch.isdigit()) or 0)
    return digits(info.major), digits(info.minor)


@dataclass(frozen=True)
class NamespaceInfo:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


class Namespaces:
    """A namespace's labels and annotations, cached for `ttl` seconds (bounded)."""

    def __init__(self, api: client.ApiClient, *, ttl: float = 5.0, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._core = client.CoreV1Api(api)
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, NamespaceInfo]] = OrderedDict()

    async def get(self, name: str) -> NamespaceInfo:
        now = self._clock()
        hit = self._cache.get(name)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        try:
            ns = await self._core.read_namespace(name, _request_timeout=API_TIMEOUT)
        except ApiException as e:
            raise KubeError(f"reading namespace {name!r}: {e.status} {e.reason}") from None
        except OSError as e:
            raise KubeError(f"reading namespace {name!r}: {e}") from None
        info = NamespaceInfo(dict(ns.metadata.labels or {}), dict(ns.metadata.annotations or {}))
        self._cache[name] = (now, info)
        self._cache.move_to_end(name)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return info


class TrustRootsPublisher:
    """Keeps `meshlet-identity-trust-roots` in pod namespaces equal to the control plane's."""

    def __init__(self, api: client.ApiClient, control_plane_namespace: str, *, ttl: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._core = client.CoreV1Api(api)
        self._cp_ns = control_plane_namespace
        self._ttl = ttl
        self._clock = clock
        self._done: OrderedDict[str, float] = OrderedDict()

    async def _source(self) -> str:
        try:
            cm = await self._core.read_namespaced_config_map(TRUST_ROOTS_CONFIGMAP, self._cp_ns,
                                                            _request_timeout=API_TIMEOUT)
        except ApiException as e:
            raise KubeError(f"reading ConfigMap {self._cp_ns}/{TRUST_ROOTS_CONFIGMAP}: {e.status} {e.reason}") from None
        pem = (cm.data or {}).get(TRUST_ROOTS_KEY, "")
        if "BEGIN CERTIFICATE" not in pem:
            raise KubeError(f"ConfigMap {self._cp_ns}/{TRUST_ROOTS_CONFIGMAP} has no PEM under {TRUST_ROOTS_KEY}")
        return pem

    async def ensure(self, namespace: str) -> None:
        if namespace == self._cp_ns:
            return
        now = self._clock()
        last = self._done.get(namespace)
        if last is not None and now - last < self._ttl:
            return
        pem = await self._source()
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=TRUST_ROOTS_CONFIGMAP, namespace=namespace,
                                         labels={MANAGED_BY[0]: MANAGED_BY[1]}),
            data={TRUST_ROOTS_KEY: pem})
        try:
            try:
                current = await self._core.read_namespaced_config_map(TRUST_ROOTS_CONFIGMAP, namespace,
                                                                     _request_timeout=API_TIMEOUT)
            except ApiException as e:
                if e.status != 404:
                    raise
                await self._core.create_namespaced_config_map(namespace, body, _request_timeout=API_TIMEOUT)
                log.info("trust_roots.published", namespace=namespace)
            else:
                if (current.data or {}).get(TRUST_ROOTS_KEY) != pem:
                    await self._core.replace_namespaced_config_map(TRUST_ROOTS_CONFIGMAP, namespace, body,
                                                                   _request_timeout=API_TIMEOUT)
                    log.info("trust_roots.updated", namespace=namespace)
        except ApiException as e:
            if e.status != 409:  # created concurrently by another replica: fine
                raise KubeError(f"writing ConfigMap {namespace}/{TRUST_ROOTS_CONFIGMAP}: {e.status} {e.reason}") from None
        self._done[namespace] = now
        self._done.move_to_end(namespace)
        while len(self._done) > 4096:
            self._done.popitem(last=False)

    async def resync(self) -> int:
        """Bring every copy (found by its label) up to date with the control plane's; returns how
        many were rewritten. This is how a rotated trust anchor reaches the pod namespaces."""
        pem = await self._source()
        try:
            copies = await self._core.list_config_map_for_all_namespaces(
                label_selector=f"{MANAGED_BY[0]}={MANAGED_BY[1]}", _request_timeout=API_TIMEOUT)
        except ApiException as e:
            raise KubeError(f"listing trust-roots copies: {e.status} {e.reason}") from None
        changed = 0
        for cm in copies.items:
            if cm.metadata.name != TRUST_ROOTS_CONFIGMAP or (cm.data or {}).get(TRUST_ROOTS_KEY) == pem:
                continue
            cm.data = {**(cm.data or {}), TRUST_ROOTS_KEY: pem}
            try:
                await self._core.replace_namespaced_config_map(TRUST_ROOTS_CONFIGMAP, cm.metadata.namespace, cm,
                                                               _request_timeout=API_TIMEOUT)
            except ApiException as e:
                log.warning("trust_roots.resync_failed", namespace=cm.metadata.namespace, error=f"{e.status} {e.reason}")
                continue
            changed += 1
            log.info("trust_roots.updated", namespace=cm.metadata.namespace)
        return changed

    async def run(self, interval: float) -> None:
        """Resync forever every `interval` seconds; errors are logged and retried next round."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.resync()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a background loop: log, keep going
                log.warning("trust_roots.resync_failed", error=f"{type(e).__name__}: {e}")
