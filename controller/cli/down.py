"""`meshlet down [--purge]`: stop the local mesh and remove every kernel object of ours.

The runtime daemon goes first (it stops its pods cleanly), then destination
and identity; afterwards anything left with our prefix (netns, veths, the
bridge, /etc/netns files, processes inside those namespaces) is removed too,
which also covers a crashed previous run. The store and the CA stay unless
--purge.
"""
from __future__ import annotations

import asyncio
import shutil

import click
from meshlet.controller.cli._local import absolute, fail, require_root
from meshlet.controller.config import LocalConfig
from meshlet.controller.local import controlplane as cp
from meshlet.controller.local import netns
from meshlet.controller.store import StoreError, open_local_store

RUNTIME_GRACE = 60.0
"""The runtime stops every pod before exiting; give it time on a busy machine."""


async def _forget_pods(cfg: LocalConfig) -> None:
    if not cfg.db_path.exists():
        return
    store = open_local_store(cfg, create=False)
    try:
        for kind in ("Pod", "WorkloadToken"):
            objs, _ = await store.list(kind)
            for o in objs:
                await store.delete(kind, o.namespace, o.name)
    finally:
        await store.close()


async def _down(cfg: LocalConfig) -> list[str]:
    done: list[str] = []
    running = cp.find_running(cfg)
    order = ["runtime", "destination", "identity"]
    for name in order + [n for n in running if n not in order]:
        pid = running.get(name)
        if pid is None:
            continue
        killed = cp.stop(pid, grace=RUNTIME_GRACE if name == "runtime" else 10.0)
        done.append(f"stopped {name} (pid {pid}{', killed' if killed else ''})")
    removed = await netns.cleanup_all(cfg.netns_prefix, cfg.bridge)
    done += [f"removed {r}" for r in removed]
    cp.clear_records(cfg)
    try:
        await _forget_pods(cfg)
    except StoreError as e:
        done.append(f"warning: could not remove Pod records from the store: {e}")
    return done


@click.command()
@click.option("--purge", is_flag=True, help="Also delete the state dir (store, CA, logs).")
@click.pass_obj
def down(cfg: LocalConfig, purge: bool) -> None:
    """Stop the local mesh; keeps the store and CA unless --purge."""
    cfg = absolute(cfg)
    require_root("down")
    try:
        if cfg.state_dir.exists():
            with cp.state_lock(cfg):
                lines = asyncio.run(_down(cfg))
        else:
            lines = asyncio.run(_down(cfg))
        if purge and cfg.state_dir.exists():
            shutil.rmtree(cfg.state_dir)
            lines.append(f"removed state dir {cfg.state_dir}")
    except (netns.NetnsError, OSError) as e:
        fail(str(e))
    for line in lines:
        click.echo(line)
    click.echo("mesh is down" + ("" if purge else f" (state kept in {cfg.state_dir}; --purge removes it)"))
