"""KubeStore: the Store protocol over a Kubernetes API server (kubernetes_asyncio, plain JSON).

- get/list read the API (lists paged by 500); objects that do not fit the model are logged
  with their name and skipped (translate.py).
- apply validates every object first (the model's checks, as `meshlet apply`), then writes
  them in order with server-side apply (field manager `meshlet`, conflicts forced). A real
  API server has no multi-object transaction: when a write fails after others succeeded,
  the error says which were applied and which were not attempted (`.applied` holds them).
- update_status writes the status subresource, keeping status fields the model does not know.
- watch runs one Reflector per kind (list, then watch from that version; resume after a
  dropped watch; relist and report differences after 410 Gone; backoff) merged into one
  bounded queue. Events are ordered per kind, not across kinds.
- Errors of the API are converted once, at this boundary (apierrors.py): 404 → NotFound/None/False,
  409 → Conflict, 410 → Gone, 422/400 → Invalid (the server's causes listed), others → StoreError.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Self

import structlog
from meshlet.controller.model import (
    DEFAULT_NAMESPACE,
    DEFAULT_REGISTRY,
    Registry,
    Resource,
    UnknownKind,
)
from meshlet.controller.store.base import Action, ApplyResult, KindRef, WatchEvent
from meshlet.controller.store.prepare import prepare
from meshlet.controller.store.errors import Conflict, Invalid, NotFound, StoreError
from meshlet.controller.store.kube.apierrors import is_missing_object, partial_failure, to_store_error
from meshlet.controller.store.kube.config import KubeStoreConfig, new_api_client
from meshlet.controller.store.kube.reflector import Backoff, KindNotServed, RawEvent, Reflector
from meshlet.controller.store.kube.resources import KubeResource
from meshlet.controller.store.kube.translate import (
    Untranslatable,
    from_kube,
    object_name,
    parse_rv,
    status_to_kube,
    to_kube,
)
from meshlet.controller.store.kube.transport import APPLY_PATCH, ApiError, Transport, TransportError

PAGE = 500


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class KubeStore:
    """Store backed by a Kubernetes API server; see the module docstring. Satisfies the Store protocol."""

    def __init__(self, transport: Transport, cfg: KubeStoreConfig = KubeStoreConfig(), *,
                 registry: Registry = DEFAULT_REGISTRY, log: Any = None) -> None:
        self.transport = transport
        self.cfg = cfg
        self.registry = registry
        self.log = log if log is not None else structlog.get_logger("meshlet.controller.store.kube")
        self.reflectors: list[Reflector] = []
        """The per-kind loops of running watches (for tests and diagnostics)."""
        self._closed = False

    @classmethod
    async def connect(cls, cfg: KubeStoreConfig, *, registry: Registry = DEFAULT_REGISTRY,
                      log: Any = None) -> KubeStore:
        api = await new_api_client(cfg)
        return cls(Transport(api, cfg.request_timeout), cfg, registry=registry, log=log)

    def __repr__(self) -> str:
        return f"<KubeStore {self.transport.host}>"

    # === plumbing ===

    def resource(self, kind: KindRef) -> KubeResource:
        try:
            return KubeResource(self.registry.for_kind(kind))
        except UnknownKind as e:
            raise Invalid(str(e)) from None

    def _ns(self, res: KubeResource, namespace: str | None) -> str | None:
        return (namespace or DEFAULT_NAMESPACE) if res.namespaced else None

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._closed:
            raise StoreError("store is closed")
        return await self.transport.request(method, path, **kwargs)

    def _convert(self, e: TransportError, what: str) -> StoreError:
        return to_store_error(e, what)

    def _decode(self, res: KubeResource, data: Any) -> Resource | None:
        try:
            return from_kube(self.registry, res.info, data)
        except Untranslatable as e:
            self.log.warning("object.skipped", object=e.name, reason=e.reason)
            return None

    async def current_version(self) -> int:
        """The cluster's current resourceVersion (from a one-item list of namespaces)."""
        res = self.resource("Namespace")
        try:
            data = await self._call("GET", res.collection(), query={"limit": 1})
            return parse_rv((data.get("metadata") or {}).get("resourceVersion", "0"))
        except TransportError as e:
            raise self._convert(e, "list namespaces") from None
        except ValueError as e:
            raise StoreError(f"list namespaces: {e}") from None

    # === reads ===

    async def get(self, kind: KindRef, namespace: str | None, name: str) -> Resource | None:
        res = self.resource(kind)
        try:
            data = await self._call("GET", res.item(self._ns(res, namespace), name))
        except ApiError as e:
            if e.status == 404:
                return None
            raise self._convert(e, f"get {res.display} {name}") from None
        except TransportError as e:
            raise self._convert(e, f"get {res.display} {name}") from None
        try:
            return from_kube(self.registry, res.info, data)
        except Untranslatable as e:
            raise StoreError(f"{e.name} cannot be read by meshlet: {e.reason}") from None

    async def _list_raw(self, res: KubeResource, namespace: str | None) -> tuple[list[Any], int]:
        items: list[Any] = []
        query: dict[str, Any] = {"limit": PAGE}
        while True:
            try:
                data = await self._call("GET", res.collection(namespace), query=query)
            except ApiError as e:
                if e.status == 404:
                    raise KindNotServed(f"the API server does not serve {res.display}: install meshlet's CRDs "
                                        "(helm/meshlet-crds or `meshlet install --crds`)") from None
                if e.status == 410 and "continue" in query:
                    items, query = [], {"limit": PAGE}  # the continue token expired: start over
                    continue
                raise self._convert(e, f"list {res.display}") from None
            except TransportError as e:
                raise self._convert(e, f"list {res.display}") from None
            items.extend(data.get("items") or [])
            meta = data.get("metadata") or {}
            if not meta.get("continue"):
                try:
                    return items, parse_rv(meta.get("resourceVersion", "0"))
                except ValueError as e:
                    raise StoreError(f"list {res.display}: {e}") from None
            query = {"limit": PAGE, "continue": meta["continue"]}

    async def list(self, kind: KindRef, namespace: str | None = None) -> tuple[list[Resource], int]:
        res = self.resource(kind)
        ns = self._ns(res, namespace) if namespace is not None else None
        try:
            raw, rv = await self._list_raw(res, ns)
        except KindNotServed as e:
            self.log.warning("kind.not_served", resource=res.display, reason=str(e))
            return [], await self.current_version()
        decoded = [r for r in (self._decode(res, item) for item in raw) if r is not None]
        decoded.sort(key=lambda r: (r.metadata.namespace or "", r.metadata.name))
        return decoded, rv

    # === writes ===

    def _prepare(self, resources: Sequence[Resource]) -> list[Resource]:
        """Validate and default every object before anything is written; Invalid lists all problems."""
        return prepare(self.registry, resources)

    async def _apply_one(self, resource: Resource) -> ApplyResult:
        res = self.resource(resource.kind)
        ns = self._ns(res, resource.metadata.namespace)
        what = f"{res.info.display}/{resource.metadata.name}"
        path = res.item(ns, resource.metadata.name)
        try:
            existing: Any = await self._call("GET", path)
        except ApiError as e:
            if e.status != 404:
                raise self._convert(e, what) from None
            if not is_missing_object(e):
                raise Invalid(f"{what}: the API server does not serve {res.display}: install meshlet's CRDs "
                              "(helm/meshlet-crds or `meshlet install --crds`)") from None
            existing = None
        except TransportError as e:
            raise self._convert(e, what) from None
        body = to_kube(resource, keep_resource_version=existing is not None)
        if ns is not None:
            body["metadata"]["namespace"] = ns
        try:
            stored = await self._call("PATCH", path, body=body, content_type=APPLY_PATCH,
                                      query={"fieldManager": self.cfg.field_manager, "force": "true"})
        except ApiError as e:
            if e.status == 404 and ns is not None and (e.body.get("details") or {}).get("kind") == "namespaces":
                raise Invalid(f"{what}: namespace {ns!r} not found (create it, or apply its Namespace "
                              "earlier in the same request)") from None
            raise self._convert(e, what) from None
        except TransportError as e:
            raise self._convert(e, what) from None
        result = from_kube(self.registry, res.info, stored)
        if existing is None:
            return ApplyResult(result, Action.CREATED)
        old_rv = (existing.get("metadata") or {}).get("resourceVersion")
        new_rv = (stored.get("metadata") or {}).get("resourceVersion")
        return ApplyResult(result, Action.UNCHANGED if old_rv == new_rv else Action.CONFIGURED)

    async def apply(self, resources: Sequence[Resource]) -> list[ApplyResult]:
        prepared = self._prepare(resources)
        done: list[ApplyResult] = []
        for i, resource in enumerate(prepared):
            try:
                done.append(await self._apply_one(resource))
            except StoreError as e:
                if not done:
                    raise
                raise partial_failure(e, done, prepared[i + 1:]) from None
        return done

    async def delete(self, kind: KindRef, namespace: str | None, name: str) -> bool:
        res = self.resource(kind)
        try:
            await self._call("DELETE", res.item(self._ns(res, namespace), name),
                             query={"propagationPolicy": "Background"})
            return True
        except ApiError as e:
            if e.status == 404:
                return False
            raise self._convert(e, f"delete {res.info.display}/{name}") from None
        except TransportError as e:
            raise self._convert(e, f"delete {res.info.display}/{name}") from None

    async def update_status(self, resource: Resource) -> Resource:
        (resource,) = self._prepare([resource])
        res = self.resource(resource.kind)
        ns = self._ns(res, resource.metadata.namespace)
        what = f"{res.info.display}/{resource.metadata.name}"
        for _ in range(5):
            try:
                current = await self._call("GET", res.item(ns, resource.metadata.name))
                body = status_to_kube(resource, current)
                stored = await self._call("PUT", res.status(ns, resource.metadata.name), body=body)
                return from_kube(self.registry, res.info, stored)
            except ApiError as e:
                if e.status == 409 and not resource.metadata.resource_version:
                    continue  # changed between our read and write; nothing to conflict with: again
                if e.status == 404:
                    raise NotFound(f"{what} not found" + (f" in namespace {ns}" if ns else "")) from None
                raise self._convert(e, f"update status of {what}") from None
            except TransportError as e:
                raise self._convert(e, f"update status of {what}") from None
            except Untranslatable as e:
                raise StoreError(f"{e.name} cannot be read by meshlet: {e.reason}") from None
        raise Conflict(f"{what}: its status kept changing while being written; try again")

    # === watch ===

    async def list_kind(self, res: KubeResource) -> tuple[list[Resource], int]:
        raw, rv = await self._list_raw(res, None)
        return [r for r in (self._decode(res, item) for item in raw) if r is not None], rv

    async def watch_kind(self, res: KubeResource, since: int) -> AsyncIterator[RawEvent]:
        query = {"watch": "true", "resourceVersion": str(since), "allowWatchBookmarks": "true",
                 "timeoutSeconds": self.cfg.watch_timeout}
        what = f"watch {res.display}"
        try:
            lines = self.transport.stream(res.collection(), query, self.cfg.watch_timeout + 30)
            async with contextlib.aclosing(lines):
                async for line in lines:
                    event = self._event(res, line)
                    if event is not None:
                        yield event
        except ApiError as e:
            if e.status == 404:
                raise KindNotServed(f"the API server does not serve {res.display}") from None
            raise self._convert(e, what) from None
        except TransportError as e:
            raise self._convert(e, what) from None

    def _event(self, res: KubeResource, line: Any) -> RawEvent | None:
        type_ = line.get("type") if isinstance(line, dict) else None
        obj = line.get("object") if isinstance(line, dict) else None
        if type_ == "ERROR":
            status = obj if isinstance(obj, dict) else {}
            raise self._convert(ApiError(int(status.get("code") or 500), status), f"watch {res.display}")
        if type_ not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK") or not isinstance(obj, dict):
            self.log.warning("watch.odd_event", resource=res.display, event=str(line)[:200])
            return None
        try:
            rv = parse_rv((obj.get("metadata") or {}).get("resourceVersion"))
        except ValueError as e:
            self.log.warning("object.skipped", object=object_name(res.info, obj), reason=str(e))
            return None
        if type_ == "BOOKMARK":
            return RawEvent("BOOKMARK", None, rv)
        resource = self._decode(res, obj)
        return RawEvent("BOOKMARK" if resource is None else type_, resource, rv)

    async def watch(self, kinds: set[str] | str | None = None,
                    since: int | None = None) -> AsyncIterator[WatchEvent]:
        if isinstance(kinds, str):
            kinds = {kinds}
        infos = list(self.registry) if kinds is None else [self.resource(k).info for k in kinds]
        resources = sorted({KubeResource(i) for i in infos}, key=lambda r: r.kind)
        queue: asyncio.Queue[WatchEvent | _Failure] = asyncio.Queue(self.cfg.queue_capacity)
        backoff = Backoff(self.cfg.backoff_initial, self.cfg.backoff_max, self.cfg.missing_kind_retry)
        reflectors = [Reflector(self, res, queue.put, self.log, backoff) for res in resources]
        self.reflectors.extend(reflectors)

        async def run(reflector: Reflector) -> None:
            try:
                await reflector.run(since)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - handed to the consumer, which decides
                await queue.put(_Failure(e))

        tasks = [asyncio.create_task(run(r), name=f"kube-watch-{r.res.kind}") for r in reflectors]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # the tasks' CancelledErrors are results here
            for reflector in reflectors:
                with contextlib.suppress(ValueError):
                    self.reflectors.remove(reflector)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
