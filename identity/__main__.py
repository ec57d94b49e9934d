"""`python -m meshlet.identity`: the identity control-plane service.

Loads (or creates) the trust anchor and issuer, validates workload tokens
against the store and signs proxies' CSRs over gRPC.
"""
from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

import click
from meshlet.controller.config import LocalConfig
from meshlet.controller.log import setup as setup_log
from meshlet.controller.serve import (
    GrpcServeSpec,
    ServeState,
    admin_app,
    run_grpc,
    split_hostport,
)
from meshlet.controller.store.open import StoreSettings, store_options
from prometheus_client import CollectorRegistry

from .errors import CaError, IdentityError
from .issuer import CA, ensure_ca, load_ca
from .kube import DEFAULT_NAMESPACE, KubeIdentitySettings
from .kube_issuer import DEFAULT_SECRET
from .server import IdentityMetrics, IdentityService
from .spiffe import check_trust_domain
from .tokenreview import DEFAULT_AUDIENCE
from .validator import LocalTokenValidator

DEFAULT_LISTEN = "198.18.0.1:8080"
DEFAULT_KUBE_LISTEN = "0.0.0.0:8080"
DEFAULT_ADMIN_PORT = 9990


@dataclass(frozen=True)
class IdentitySettings:
    state_dir: Path
    listen: tuple[str, int]
    admin_listen: tuple[str, int]
    trust_domain: str
    issuer_cert: Path | None
    issuer_key: Path | None
    trust_anchors: Path | None
    log_level: str
    kube: KubeIdentitySettings | None = None
    """Set: Kubernetes mode (TokenReview, issuer Secret, TLS); None: local mode."""

    @property
    def db_path(self) -> Path:
        return self.state_dir / "store.db"

    def load_ca(self) -> CA:
        byo = (self.issuer_cert, self.issuer_key, self.trust_anchors)
        if any(byo):
            if not all(byo):
                raise CaError("--issuer-cert, --issuer-key and --trust-anchors must be given together")
            return load_ca(
                anchors=self.trust_anchors,  # type: ignore[arg-type]
                issuer_cert=self.issuer_cert,  # type: ignore[arg-type]
                issuer_key=self.issuer_key,  # type: ignore[arg-type]
                trust_domain=self.trust_domain,
            )
        return ensure_ca(self.state_dir / "identity", self.trust_domain)


async def serve(settings: IdentitySettings) -> None:
    from meshlet.controller.store import SqliteStore

    log = setup_log("identity", settings.log_level)
    if settings.kube is not None:
        from .kube import serve_kube

        await serve_kube(kube=settings.kube, trust_domain=settings.trust_domain, listen=settings.listen,
                         admin_listen=settings.admin_listen, log=log)
        return
    ca = settings.load_ca()
    store = SqliteStore(settings.db_path)
    try:
        registry = CollectorRegistry()
        service = IdentityService(
            ca=ca, validator=LocalTokenValidator(store), metrics=IdentityMetrics.create(registry), log=log
        )
        state = ServeState()
        await run_grpc(
            GrpcServeSpec(name="identity", handlers=[service], listen=settings.listen,
                          admin_listen=settings.admin_listen,
                          log_fields={"trust_domain": settings.trust_domain,
                                      "issuer": ca.issuer_cert.subject.rfc4514_string()}),
            admin=admin_app(ready=lambda: state.serving, registry=registry), log=log, state=state,
        )
    finally:
        await store.close()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--state-dir", type=click.Path(path_type=Path), default=None,
              help="State dir (store.db, identity/); default $MESHLET_STATE_DIR or /var/lib/meshlet.")
@click.option("--listen", default=None,
              help=f"gRPC address host:port [default: {DEFAULT_LISTEN}; with --store kube {DEFAULT_KUBE_LISTEN}].")
@click.option("--admin-listen", default=None, help=f"Admin HTTP host:port [default: <listen host>:{DEFAULT_ADMIN_PORT}].")
@click.option("--trust-domain", default=None, help="Trust domain [default: $MESHLET_TRUST_DOMAIN or cluster.local].")
@click.option("--issuer-cert", type=click.Path(path_type=Path), default=None, help="Bring your own issuer certificate (PEM).")
@click.option("--issuer-key", type=click.Path(path_type=Path), default=None, help="Bring your own issuer key (PEM, EC P-256).")
@click.option("--trust-anchors", type=click.Path(path_type=Path), default=None, help="Trust anchors (PEM bundle).")
@store_options
@click.option("--namespace", default=DEFAULT_NAMESPACE, show_default=True, envvar="MESHLET_NAMESPACE",
              help="With --store kube: the control-plane namespace (issuer Secret, identity's Service name).")
@click.option("--issuer-secret", default=DEFAULT_SECRET, show_default=True,
              help="With --store kube: Secret holding tls.crt, tls.key and ca.crt.")
@click.option("--token-audience", "audiences", multiple=True, default=(DEFAULT_AUDIENCE,), show_default=True,
              help="With --store kube: audience a workload token must carry (repeatable).")
@click.option("--issuer-refresh", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="With --store kube: seconds between re-reads of the issuer Secret.")
@click.option("--tls/--no-tls", default=True, show_default=True,
              help="With --store kube: serve gRPC over TLS (certificate for meshlet-identity.<namespace>.svc).")
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def main(state_dir: Path | None, listen: str | None, admin_listen: str | None, trust_domain: str | None,
         issuer_cert: Path | None, issuer_key: Path | None, trust_anchors: Path | None, store: str,
         kubeconfig: Path | None, kube_context: str | None, namespace: str, issuer_secret: str,
         audiences: tuple[str, ...], issuer_refresh: float, tls: bool, cluster_domain: str, log_level: str) -> None:
    cfg = LocalConfig.from_env(state_dir)
    store_settings = StoreSettings.from_options(store, kubeconfig, kube_context)
    kube = None
    if store_settings.backend == "kube":
        if issuer_cert or issuer_key or trust_anchors:
            raise click.UsageError("with --store kube the issuer comes from --issuer-secret, "
                                   "not --issuer-cert/--issuer-key/--trust-anchors")
        kube = KubeIdentitySettings(
            kubeconfig=store_settings.kubeconfig, context=store_settings.context, namespace=namespace,
            issuer_secret=issuer_secret, audiences=tuple(audiences), issuer_refresh=issuer_refresh, tls=tls,
            cluster_domain=cluster_domain,
        )
    listen = listen or (DEFAULT_KUBE_LISTEN if kube else DEFAULT_LISTEN)
    try:
        listen_addr = split_hostport(listen, what="--listen")
        admin_addr = split_hostport(admin_listen or f"{listen_addr[0]}:{DEFAULT_ADMIN_PORT}", what="--admin-listen")
        settings = IdentitySettings(
            state_dir=cfg.state_dir,
            listen=listen_addr,
            admin_listen=admin_addr,
            trust_domain=check_trust_domain(trust_domain or cfg.trust_domain),
            issuer_cert=issuer_cert,
            issuer_key=issuer_key,
            trust_anchors=trust_anchors,
            log_level=log_level,
            kube=kube,
        )
    except (ValueError, IdentityError) as e:
        raise click.UsageError(str(e)) from None
    try:
        asyncio.run(serve(settings))
    except CaError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
