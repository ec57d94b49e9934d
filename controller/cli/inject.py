"""`meshlet inject FILE|-`: add the meshlet proxy to workloads in YAML, offline.

Like `istioctl kube-inject -f` and `linkerd inject --manual`: every Pod,
Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job,
CronJob (and List items) gets `meshlet-proxy` + `meshlet-init` unless its pod
template opts out (`sidecar.istio.io/inject: "false"` / `meshlet.io/inject:
"false"`); other documents pass through unchanged. The injected YAML goes to
stdout, a one-line summary per workload to stderr; an error names the document
and nothing is written. The webhook skips pods injected this way (they carry
`meshlet.io/inject-status`), so override annotations are read here, at inject time.
"""
from __future__ import annotations

import sys

import click
import yaml
from meshlet.injector.config import ConfigError, InjectorConfig, Resources
from meshlet.injector.workload import Report, WorkloadError, inject_document


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        _fail(f"{path}: {e.strerror or e}")
        raise AssertionError("unreachable")


def inject_text(text: str, cfg: InjectorConfig, source: str = "-") -> tuple[str, list[Report]]:
    """The injected multi-document YAML and a report per workload (WorkloadError names the document)."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise WorkloadError(f"{source}: not YAML: {str(e).splitlines()[0]}") from None
    out, reports = [], []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        new, rs = inject_document(doc, cfg, where=f"{source} document {i + 1} ")
        out.append(new)
        reports += rs
    rendered = yaml.safe_dump_all(out, sort_keys=False, default_flow_style=False) if out else ""
    return rendered, reports


@click.command("inject")
@click.argument("file", type=str)
@click.option("--proxy-image", default=None, help="Image of meshlet-proxy/meshlet-init (default meshlet/meshlet:<version>).")
@click.option("--namespace", "cp_namespace", default="meshlet", show_default=True, help="Control-plane namespace.")
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--trust-domain", default="cluster.local", show_default=True)
@click.option("--identity-server-name", default=None,
              help='Name in identity\'s TLS certificate (default meshlet-identity.<namespace>.svc; "": plaintext).')
@click.option("--native-sidecar/--no-native-sidecar", default=True, show_default=True,
              help="Proxy as an initContainer with restartPolicy Always (Kubernetes >= 1.29).")
@click.option("--proxy-cpu-request", default="100m", show_default=True)
@click.option("--proxy-memory-request", default="64Mi", show_default=True)
@click.option("--proxy-cpu-limit", default=None)
@click.option("--proxy-memory-limit", default=None)
def inject(file: str, proxy_image: str | None, cp_namespace: str, cluster_domain: str, trust_domain: str,
           identity_server_name: str | None, native_sidecar: bool, proxy_cpu_request: str, proxy_memory_request: str,
           proxy_cpu_limit: str | None, proxy_memory_limit: str | None) -> None:
    """Inject the meshlet proxy into the workloads of FILE ("-" for stdin); prints YAML."""
    try:
        cfg = InjectorConfig(
            **({"proxy_image": proxy_image} if proxy_image else {}),
            control_plane_namespace=cp_namespace, cluster_domain=cluster_domain, trust_domain=trust_domain,
            identity_server_name=identity_server_name, native_sidecar=native_sidecar,
            resources=Resources(cpu_request=proxy_cpu_request or None, memory_request=proxy_memory_request or None,
                                cpu_limit=proxy_cpu_limit, memory_limit=proxy_memory_limit),
        )
        rendered, reports = inject_text(_read(file), cfg, source="stdin" if file == "-" else file)
    except (ConfigError, WorkloadError) as e:
        _fail(str(e))
        return
    click.echo(rendered, nl=False)
    for r in reports:
        click.echo(f"{r.name} {r.result}" + ("" if r.result == "injected" else f" ({r.reason})"), err=True)
