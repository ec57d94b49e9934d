"""`meshlet up -f FILES_OR_DIRS`: start the local mesh and run the manifests' workloads.

Steps: root check; under the state lock, clean leftovers of a crashed run
(unless a healthy mesh is already running: then only apply and wait);
create the state dir and the CA; the bridge; start destination, identity
and the runtime daemon detached (pids in runtime.json); wait for their
readiness; apply the manifests (same validation as `meshlet apply`); wait
until every Deployment's pods are ready; print a summary.
"""
from __future__ import annotations

import asyncio
import time

import click
from meshlet.controller.cli._local import absolute, fail, require_root
from meshlet.controller.config import LocalConfig
from meshlet.controller.local import controlplane as cp
from meshlet.controller.local import netns
from meshlet.controller.local.pod import pod_dir
from meshlet.controller.local.probe import http_ok
from meshlet.controller.local.resources import DEPLOYMENT_ANNOTATION, PROXY_ANNOTATION
from meshlet.controller.model import (
    DEFAULT_REGISTRY,
    ManifestError,
    Pod,
    Resource,
    load_paths,
)
from meshlet.controller.store import StoreError, open_local_store


class UpError(Exception):
    """`up` cannot finish; the message says why (with log tails)."""


def _load(files: tuple[str, ...]) -> list[Resource]:
    warnings: list[str] = []
    try:
        resources = load_paths(list(files), warnings=warnings)
    except ManifestError as e:
        raise UpError(str(e)) from None
    for w in warnings:
        click.echo(f"Warning: {w}", err=True)
    return resources


async def clean_leftovers(cfg: LocalConfig) -> list[str]:
    """Stop processes of a crashed run and remove its netns/veths/bridge/name files."""
    removed = []
    for name, pid in cp.find_running(cfg).items():
        cp.stop(pid, grace=10)
        removed.append(f"{name} pid {pid}")
    removed += await netns.cleanup_all(cfg.netns_prefix, cfg.bridge)
    cp.clear_records(cfg)
    return removed


async def wait_control_plane(cfg: LocalConfig, pids: dict[str, int], timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    comps = {c.name: c for c in cp.components(cfg)}
    pending = set(comps)
    while pending:
        for name in sorted(pending):
            c = comps[name]
            if not cp.is_ours(pids[name], c, cfg):
                raise UpError(f"{name} exited during start-up; last lines of {c.log}:\n{cp.tail(c.log)}")
            if c.admin is not None:
                ok = await http_ok(c.admin[0], c.admin[1], "/ready", timeout=1.0)
            else:
                ready = cfg.state_dir / cp.RUNTIME_READY
                ok = ready.exists() and ready.read_text().strip() == str(pids[name])
            if ok:
                pending.discard(name)
        if pending and loop.time() > deadline:
            names = ", ".join(sorted(pending))
            logs = "\n".join(f"--- {comps[n].log}:\n{cp.tail(comps[n].log)}" for n in sorted(pending))
            raise UpError(f"timed out after {timeout:.0f}s waiting for {names} to become ready\n{logs}")
        if pending:
            await asyncio.sleep(0.2)


async def start_control_plane(cfg: LocalConfig, timeout: float) -> bool:
    """Start (or find) the control plane. Returns False if it was already running."""
    running = cp.find_running(cfg)
    comps = cp.components(cfg)
    if len(running) == len(comps) and (cfg.state_dir / cp.RUNTIME_READY).exists():
        await wait_control_plane(cfg, running, timeout)
        return False
    removed = await clean_leftovers(cfg)
    if removed:
        click.echo(f"cleaned up leftovers of a previous run: {', '.join(removed)}")
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    from meshlet.identity.errors import CaError
    from meshlet.identity.issuer import ensure_ca

    try:
        ensure_ca(cfg.state_dir / "identity", cfg.trust_domain)
    except CaError as e:
        raise UpError(f"trust anchor/issuer in {cfg.state_dir / 'identity'}: {e}") from None
    store = open_local_store(cfg)
    await store.list("Namespace")  # creates the database before anyone else opens it
    await store.close()
    await netns.ensure_bridge(cfg.bridge, cfg.gateway_ip, cfg.pod_cidr)
    pids: dict[str, int] = {}
    for c in comps:
        pids[c.name] = cp.start(c, cfg)
        cp.write_pids(cfg, pids)
    try:
        await wait_control_plane(cfg, pids, timeout)
    except UpError:
        # leave nothing half-started behind: the next `up` starts from scratch anyway
        for pid in reversed(list(pids.values())):
            cp.stop(pid, grace=10)
        cp.clear_records(cfg)
        raise
    return True


def _deployment_ready(d: Resource) -> bool:
    st = d.status
    want = d.spec.replicas
    return (st is not None and st.observed_generation >= d.metadata.generation and st.replicas == want
            and st.ready_replicas == want and st.updated_replicas == want)


async def wait_workloads(cfg: LocalConfig, timeout: float) -> list[Pod]:
    store = open_local_store(cfg)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            deps, _ = await store.list("Deployment")
            pods, _ = await store.list("Pod")
            waiting = [d for d in deps if not _deployment_ready(d)]
            if not waiting:
                return pods  # type: ignore[return-value]
            if loop.time() > deadline:
                raise UpError(f"timed out after {timeout:.0f}s waiting for pods to become ready:\n"
                              + _explain(cfg, waiting, pods))
            await asyncio.sleep(0.3)
    finally:
        await store.close()


def _explain(cfg: LocalConfig, waiting: list[Resource], pods: list[Resource]) -> str:
    out = []
    for d in waiting:
        st = d.status
        ready = st.ready_replicas if st else 0
        out.append(f"deployment {d.namespace}/{d.name}: {ready}/{d.spec.replicas} ready")
        mine = [p for p in pods if p.namespace == d.namespace and p.metadata.annotations.get(DEPLOYMENT_ANNOTATION) == d.name]
        for p in mine:
            if p.status is not None and p.status.ready:
                continue
            why = (p.status.message if p.status else None) or "not ready"
            out.append(f"  pod {p.namespace}/{p.name}: {p.status.phase if p.status else 'Pending'}, {why}")
            d_ = pod_dir(cfg, p.namespace, p.name)
            for log in ("proxy.log", "app.log"):
                if (d_ / log).exists():
                    out.append(f"  --- last lines of {d_ / log}:\n" + _indent(cp.tail(d_ / log, 15), "    "))
        if not mine:
            out.append(f"  no pods yet; see {cp.components(cfg)[2].log}:\n"
                       + _indent(cp.tail(cp.components(cfg)[2].log, 15), "    "))
    return "\n".join(out)


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line for line in text.splitlines())


async def _up(cfg: LocalConfig, files: tuple[str, ...], timeout: float) -> None:
    resources = _load(files) if files else []
    start = time.monotonic()
    with cp.state_lock(cfg):
        started = await start_control_plane(cfg, timeout)
    click.echo(f"control plane {'started' if started else 'already running'} "
               f"(destination {cfg.destination_addr}, identity {cfg.identity_addr}, bridge {cfg.bridge})")
    if resources:
        store = open_local_store(cfg)
        try:
            results = await store.apply(resources)
        except StoreError as e:
            raise UpError(str(e)) from None
        finally:
            await store.close()
        for r in results:
            click.echo(f"{DEFAULT_REGISTRY.for_kind(r.resource.kind).display}/{r.resource.metadata.name} {r.action.value}")
    remaining = max(5.0, timeout - (time.monotonic() - start))
    pods = await wait_workloads(cfg, remaining)
    click.echo("")
    click.echo(f"{'NAMESPACE':<16}{'POD':<32}{'IP':<16}{'READY':<7}MESHED")
    for p in sorted(pods, key=lambda p: (p.namespace or "", p.name)):
        meshed = "yes" if p.metadata.annotations.get(PROXY_ANNOTATION) == "injected" else "no"
        st = p.status
        click.echo(f"{p.namespace:<16}{p.name:<32}{(st.pod_ip if st else '') or '':<16}"
                   f"{'yes' if st and st.ready else 'no':<7}{meshed}")
    click.echo("")
    click.echo(f"mesh is up ({len(pods)} pods ready). Logs: meshlet logs POD -n NS; "
               f"shell: meshlet exec -n NS POD -- sh; health: meshlet check; stop: meshlet down")


@click.command()
@click.option("-f", "--filename", "files", multiple=True, metavar="PATH",
              help="Manifest file or directory of *.yaml/*.yml (repeatable).")
@click.option("--timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the control plane and every Deployment's pods.")
@click.pass_obj
def up(cfg: LocalConfig, files: tuple[str, ...], timeout: float) -> None:
    """Start the local mesh (control plane + pods) and apply manifests."""
    cfg = absolute(cfg)
    require_root("up")
    try:
        asyncio.run(_up(cfg, files, timeout))
    except (UpError, StoreError, netns.NetnsError, cp.ControlPlaneError, OSError) as e:
        fail(str(e))
