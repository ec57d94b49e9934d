"""The mutating admission webhook: POST /inject over HTTPS (aiohttp), plus the admin app.

Per review: parse (400 with the reason when it is not an AdmissionReview v1),
read the namespace's labels, decide and build the patch (`review.admit`), publish
the trust roots into the pod's namespace, answer with the uid echoed. Anything
that goes wrong inside (API server unreachable, a bug) answers `allowed: true`
without a patch and logs the error: the pod is created uninjected rather than
blocked (the webhook configuration's failurePolicy covers the injector being
down altogether). A pod-level value we cannot use (bad annotation) is denied with
a message naming it, as Istio does.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import structlog
from aiohttp import web
from meshlet.injector.config import InjectorConfig
from meshlet.injector.kube import NamespaceInfo
from meshlet.injector.review import (
    Outcome,
    ReviewError,
    ReviewRequest,
    admit,
    parse_review,
    review_response,
)
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
)

log = structlog.get_logger(component="meshlet.injector.webhook")
MAX_BODY = 8 * 1024 * 1024
REVIEW_TIMEOUT = 8.0
"""Seconds for one review's API work; past it the pod is let through uninjected (an error), before
the API server's own webhook timeout (10 s) would apply the failure policy."""


class NamespaceSource(Protocol):
    async def get(self, name: str) -> NamespaceInfo: ...


class Publisher(Protocol):
    async def ensure(self, namespace: str) -> None: ...


@dataclass
class Metrics:
    registry: CollectorRegistry
    reviews: Counter
    publish_failures: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        reviews = Counter("meshlet_injector_reviews", "Admission reviews answered, by result "
                          "(injected, skipped, denied, error, malformed).", ["result"], registry=registry)
        for result in ("injected", "skipped", "denied", "error", "malformed"):
            reviews.labels(result=result)
        failures = Counter("meshlet_injector_trust_roots_publish_failures", "Injected pods whose namespace "
                           "could not get the trust-roots ConfigMap.", registry=registry)
        return cls(registry, reviews, failures)


class Injector:
    def __init__(self, cfg: InjectorConfig, namespaces: NamespaceSource, publisher: Publisher | None,
                 metrics: Metrics) -> None:
        self.cfg = cfg
        self.namespaces = namespaces
        self.publisher = publisher
        self.metrics = metrics

    async def _outcome(self, body: bytes) -> tuple[str, Outcome]:
        req = parse_review(body)
        try:
            async with asyncio.timeout(REVIEW_TIMEOUT):
                return req.uid, await self._decide(req)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the boundary: never block a pod on our bug
            log.error("review.failed", uid=req.uid, namespace=req.namespace, error=f"{type(e).__name__}: {e}")
            return req.uid, Outcome("error", f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)

    async def _decide(self, req: ReviewRequest) -> Outcome:
        ns = await self.namespaces.get(req.namespace) if req.kind == "Pod" else NamespaceInfo({}, {})
        outcome = admit(req, ns.labels, self.cfg, ns.annotations)
        if outcome.result == "injected" and self.publisher is not None and not req.dry_run:
            outcome = await self._publish(req.uid, req.namespace, outcome)
        return outcome

    async def _publish(self, uid: str, namespace: str, outcome: Outcome) -> Outcome:
        """Copy the trust roots next to the pod. A failure does not undo the injection (the
        pod asked for a proxy): it is logged, counted and returned to the pod's creator as a
        warning; the pod waits for the ConfigMap (its volume) until it appears."""
        assert self.publisher is not None
        try:
            await self.publisher.ensure(namespace)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - reported, never fatal to the review
            self.metrics.publish_failures.inc()
            log.error("trust_roots.publish_failed", uid=uid, namespace=namespace, error=f"{type(e).__name__}: {e}")
            warning = (f"meshlet injector: trust roots not published into namespace {namespace} ({e}); "
                       "the proxy waits for ConfigMap meshlet-identity-trust-roots there")
            return replace(outcome, warnings=(warning,))
        return outcome

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            uid, outcome = await self._outcome(body)
        except ReviewError as e:
            self.metrics.reviews.labels(result="malformed").inc()
            log.warning("review.malformed", error=str(e))
            return web.Response(status=400, text=f"malformed AdmissionReview: {e}\n")
        self.metrics.reviews.labels(result=outcome.result).inc()
        log.info("review", uid=uid, result=outcome.result, reason=outcome.reason)
        return web.json_response(review_response(uid, outcome))


def webhook_app(injector: Injector) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/inject", injector.handle)
    return app


def admin_app(*, ready: Callable[[], bool], registry: CollectorRegistry) -> web.Application:
    """/live (always 200), /ready (200 once serving), /metrics."""

    async def live(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready_handler(_: web.Request) -> web.Response:
        return web.Response(text="ready\n") if ready() else web.Response(status=503, text="not ready\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/live", live)
    app.router.add_get("/ready", ready_handler)
    app.router.add_get("/metrics", metrics)
    return app


async def start_site(app: web.Application, host: str, port: int, **kwargs: object) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True, **kwargs).start()  # type: ignore[arg-type]
    except BaseException:
        await runner.cleanup()
        raise
    return runner

