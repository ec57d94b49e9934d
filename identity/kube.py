"""`python -m meshlet.identity --store kube`: identity against a Kubernetes API server.

- workload tokens: projected service-account tokens checked with TokenReview
  (`tokenreview.py`, audience `identity.meshlet.io`);
- issuer: the Secret `meshlet-identity-issuer` of the control-plane namespace
  (`kube_issuer.py`), re-read every `issuer_refresh` seconds; a rotated issuer
  signs from then on, a broken one is logged and the last good one kept;
- transport: TLS with a certificate for `meshlet-identity.<ns>.svc` issued by
  the issuer itself (`servingcert.py`), unless `tls` is off.

Identity needs no store here: the two API calls it makes (read a Secret,
create a TokenReview) go straight through kubernetes_asyncio. Its RBAC:
`get` on that Secret and `create` on `tokenreviews.authentication.k8s.io`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from meshlet.controller.serve import GrpcServeSpec, ServeState, admin_app, run_grpc
from prometheus_client import CollectorRegistry

from .errors import CaError
from .issuer import CA
from .kube_issuer import DEFAULT_SECRET, IssuerSecret, SecretRef
from .server import IdentityMetrics, IdentityService
from .servingcert import DEFAULT_SERVICE, ServingCert, service_names
from .tokenreview import (
    DEFAULT_AUDIENCE,
    KubeTokenReviewer,
    TokenReviewSettings,
    TokenReviewValidator,
)

DEFAULT_NAMESPACE = "meshlet"


@dataclass(frozen=True)
class KubeIdentitySettings:
    kubeconfig: Path | None = None
    """None: in-cluster (the pod's service account)."""
    context: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    """Control-plane namespace: where the issuer Secret lives and identity's Service is."""
    issuer_secret: str = DEFAULT_SECRET
    audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,)
    issuer_refresh: float = 30.0
    tls: bool = True
    service_name: str = DEFAULT_SERVICE
    cluster_domain: str = "cluster.local"


async def open_api_client(settings: KubeIdentitySettings) -> Any:
    """A kubernetes_asyncio ApiClient (the Kubernetes store's loader); CaError when it cannot be configured."""
    from meshlet.controller.store.errors import StoreError
    from meshlet.controller.store.kube.config import KubeStoreConfig, new_api_client

    try:
        return await new_api_client(KubeStoreConfig(kubeconfig=settings.kubeconfig, context=settings.context))
    except StoreError as e:
        raise CaError(str(e)) from None


async def serve_kube(
    *,
    kube: KubeIdentitySettings,
    trust_domain: str,
    listen: tuple[str, int],
    admin_listen: tuple[str, int],
    log: structlog.stdlib.BoundLogger,
) -> None:
    """Serve Certify until a signal; CaError when the issuer Secret is missing or unusable at start."""
    api = await open_api_client(kube)
    try:
        issuer = IssuerSecret(api, SecretRef(kube.namespace, kube.issuer_secret), trust_domain, log=log)
        ca = await issuer.load()
        registry = CollectorRegistry()
        validator = TokenReviewValidator(KubeTokenReviewer(api), TokenReviewSettings(audiences=kube.audiences))
        service = IdentityService(ca=ca, validator=validator, metrics=IdentityMetrics.create(registry), log=log)
        names = service_names(kube.service_name, kube.namespace, kube.cluster_domain)
        serving = ServingCert(ca, names) if kube.tls else None

        def rotated(new: CA) -> None:
            service.set_ca(new)
            if serving is not None:
                serving.renew(new)

        background = {"issuer-secret": issuer.follow(rotated, refresh=kube.issuer_refresh)}
        if serving is not None:
            background["serving-cert"] = serving.keep_fresh(lambda: service.ca)
        state = ServeState()
        await run_grpc(
            GrpcServeSpec(
                name="identity", handlers=[service], listen=listen, admin_listen=admin_listen,
                ssl=serving.context if serving is not None else None,
                log_fields={"trust_domain": trust_domain, "store": "kube", "issuer_secret": str(issuer.ref),
                            "issuer": ca.issuer_cert.subject.rfc4514_string(), "audiences": list(kube.audiences),
                            "server_name": names[0] if serving is not None else None},
            ),
            admin=admin_app(ready=lambda: state.serving, registry=registry), log=log, state=state,
            background=background,
        )
    finally:
        await api.close()
