"""`python -m meshlet.injector`: the sidecar-injection admission webhook (Kubernetes mode).

    python -m meshlet.injector --tls-cert tls.crt --tls-key tls.key [--kubeconfig P] \\
        [--port 8443] [--admin-port 9995] [--namespace meshlet] [--native-sidecar auto|on|off]

Without --kubeconfig it runs in-cluster (the pod's service account). Serves
AdmissionReview v1 at https://<host>:<port>/inject; /live, /ready and /metrics on
the admin port (plain HTTP). The serving certificate is reloaded when its files change.
"""
from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import replace
from pathlib import Path

import click
from meshlet.controller.log import setup as setup_log
from meshlet.injector.config import ConfigError, InjectorConfig, Resources
from meshlet.injector.kube import (
    KubeError,
    Namespaces,
    TrustRootsPublisher,
    api_client,
    server_minor_version,
)
from meshlet.injector.tlsreload import CertError, CertReloader
from meshlet.injector.webhook import (
    Injector,
    Metrics,
    admin_app,
    start_site,
    webhook_app,
)

NATIVE_SIDECAR_MIN = (1, 29)


async def serve(cfg: InjectorConfig, *, kubeconfig: str | None, host: str, port: int, admin_port: int,
                native: str, cert: Path, key: Path, reload_interval: float, trust_roots_resync: float,
                log_level: str) -> None:
    log = setup_log("injector", log_level)
    tls = CertReloader(cert, key)
    api = await api_client(kubeconfig)
    try:
        if native == "auto":
            version = await server_minor_version(api)
            cfg = replace(cfg, native_sidecar=version >= NATIVE_SIDECAR_MIN)
            log.info("injector.native_sidecar", server=f"{version[0]}.{version[1]}", enabled=cfg.native_sidecar)
        metrics = Metrics.create()
        publisher = TrustRootsPublisher(api, cfg.control_plane_namespace)
        injector = Injector(cfg, Namespaces(api), publisher, metrics)
        serving = False
        admin = await start_site(admin_app(ready=lambda: serving, registry=metrics.registry), host, admin_port)
        site = None
        watcher = asyncio.create_task(tls.watch(reload_interval), name="tls-reload")
        resync = asyncio.create_task(publisher.run(trust_roots_resync), name="trust-roots-resync")
        try:
            site = await start_site(webhook_app(injector), host, port, ssl_context=tls.context)
            serving = True
            log.info("injector.started", listen=f"{host}:{port}", admin=f"{host}:{admin_port}",
                     native_sidecar=cfg.native_sidecar, image=cfg.proxy_image)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await asyncio.wait({asyncio.ensure_future(stop.wait()), watcher, resync},
                               return_when=asyncio.FIRST_COMPLETED)
            for task in (watcher, resync):
                if task.done():
                    task.result()  # they run until cancelled: an end is an error
            log.info("injector.stopping")
        finally:
            serving = False
            watcher.cancel()
            resync.cancel()
            await asyncio.gather(watcher, resync, return_exceptions=True)
            if site is not None:
                await site.cleanup()
            await admin.cleanup()
    finally:
        await api.close()


@click.command()
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="PEM serving certificate (its SANs must match the webhook's service or URL).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Talk to the cluster of this kubeconfig (default: in-cluster service account).")
@click.option("--store", type=click.Choice(["kube"]), default="kube", show_default=True,
              help="Accepted for symmetry with the other components; the injector always reads the cluster.")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=int, default=8443, show_default=True)
@click.option("--admin-port", type=int, default=9995, show_default=True)
@click.option("--namespace", "cp_namespace", default="meshlet", show_default=True, help="Control-plane namespace.")
@click.option("--proxy-image", default=None, help="Image of meshlet-proxy/meshlet-init (default meshlet/meshlet:<version>).")
@click.option("--image-pull-policy", default="IfNotPresent", show_default=True)
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--trust-domain", default="cluster.local", show_default=True)
@click.option("--identity-addr", default=None, help="host:port of identity (default its Service's DNS name).")
@click.option("--destination-addr", default=None, help="host:port of destination (default its Service's DNS name).")
@click.option("--identity-server-name", default=None,
              help='Name in identity\'s TLS certificate (default meshlet-identity.<namespace>.svc; "": plaintext).')
@click.option("--native-sidecar", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
              help="auto: on when the API server is Kubernetes >= 1.29.")
@click.option("--proxy-cpu-request", default="100m", show_default=True)
@click.option("--proxy-memory-request", default="64Mi", show_default=True)
@click.option("--proxy-cpu-limit", default=None)
@click.option("--proxy-memory-limit", default=None)
@click.option("--proxy-log-level", default="info", show_default=True)
@click.option("--cert-reload-interval", type=float, default=2.0, show_default=True)
@click.option("--trust-roots-resync", type=click.FloatRange(min=0.1), default=60.0, show_default=True,
              help="Seconds between updates of the trust-roots copies in pod namespaces.")
@click.option("--log-level", default="info", show_default=True)
def main(tls_cert: Path, tls_key: Path, kubeconfig: str | None, store: str, host: str, port: int, admin_port: int,
         cp_namespace: str, proxy_image: str | None, image_pull_policy: str, cluster_domain: str, trust_domain: str,
         identity_addr: str | None, destination_addr: str | None, identity_server_name: str | None,
         native_sidecar: str, proxy_cpu_request: str,
         proxy_memory_request: str, proxy_cpu_limit: str | None, proxy_memory_limit: str | None,
         proxy_log_level: str, cert_reload_interval: float, trust_roots_resync: float, log_level: str) -> None:
    """Serve the meshlet sidecar-injection webhook."""
    try:
        cfg = InjectorConfig(
            **({"proxy_image": proxy_image} if proxy_image else {}),
            image_pull_policy=image_pull_policy, control_plane_namespace=cp_namespace,
            cluster_domain=cluster_domain, trust_domain=trust_domain, identity_addr=identity_addr,
            destination_addr=destination_addr, identity_server_name=identity_server_name,
            native_sidecar=native_sidecar != "off", log_level=proxy_log_level,
            resources=Resources(cpu_request=proxy_cpu_request or None, memory_request=proxy_memory_request or None,
                                cpu_limit=proxy_cpu_limit, memory_limit=proxy_memory_limit),
        )
        asyncio.run(serve(cfg, kubeconfig=kubeconfig, host=host, port=port, admin_port=admin_port,
                          native=native_sidecar, cert=tls_cert, key=tls_key,
                          reload_interval=cert_reload_interval, trust_roots_resync=trust_roots_resync,
                          log_level=log_level))
    except (ConfigError, CertError, KubeError) as e:
        click.echo(f"meshlet injector: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
