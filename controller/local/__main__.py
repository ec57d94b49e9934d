"""`python -m meshlet.controller.local --state-dir DIR`: the local runtime daemon.

Runs until SIGTERM/SIGINT, then stops every pod it started (processes,
network namespaces, Pod/WorkloadToken resources) before exiting. Writes
`<state>/runtime.ready` once it watches the store, so `meshlet up` can wait.
"""
from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys

import click
from meshlet.controller.config import LocalConfig
from meshlet.controller.local.ipam import IpamError
from meshlet.controller.local.netns import NetnsError
from meshlet.controller.local.pod import RuntimeSettings
from meshlet.controller.local.runtime import Runtime
from meshlet.controller.log import setup
from meshlet.controller.store import StoreError, open_local_store

READY_FILE = "runtime.ready"
PROXY_COMMAND_ENV = "MESHLET_PROXY_COMMAND"


async def serve(settings: RuntimeSettings) -> None:
    log = setup("local-runtime")
    cfg = settings.local
    store = open_local_store(cfg)
    runtime = Runtime(settings, store, log=log)
    ready = asyncio.Event()
    main = asyncio.create_task(runtime.run(ready))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    ready_file = cfg.state_dir / READY_FILE
    try:
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({main, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            ready_file.write_text(str(os.getpid()))
            log.info("runtime.ready", state_dir=str(cfg.state_dir), bridge=cfg.bridge, pod_cidr=str(cfg.pod_cidr))
        waiter.cancel()
        try:
            await main
        except asyncio.CancelledError:
            log.info("runtime.stopped")
    finally:
        ready_file.unlink(missing_ok=True)
        await store.close()


@click.command()
@click.option("--state-dir", envvar="MESHLET_STATE_DIR", type=click.Path(), default=None)
@click.option("--proxy-command", envvar=PROXY_COMMAND_ENV, default=None,
              help="Command line of the sidecar proxy (default: python -m meshlet.proxy).")
def main(state_dir: str | None, proxy_command: str | None) -> None:
    """Run the local pods of the mesh in STATE_DIR."""
    cfg = LocalConfig.from_env(state_dir)
    settings = RuntimeSettings(local=cfg)
    if proxy_command:
        settings = RuntimeSettings(local=cfg, proxy_argv=tuple(shlex.split(proxy_command)))
    if os.geteuid() != 0:
        click.echo("meshlet local runtime: must run as root (network namespaces, iptables)", err=True)
        sys.exit(1)
    try:
        asyncio.run(serve(settings))
    except (NetnsError, IpamError, StoreError, OSError) as e:
        click.echo(f"meshlet local runtime: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
