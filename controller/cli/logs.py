"""`meshlet logs POD [-n NS] [-c proxy|app] [-f]`: print (and follow) a pod's process log."""
from __future__ import annotations

import asyncio
import sys
import time

import click
from meshlet.controller.cli._local import absolute, fail, resolve_pod
from meshlet.controller.config import LocalConfig
from meshlet.controller.local.pod import pod_dir

POLL_SECONDS = 0.3


@click.command()
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-c", "--container", default="app", show_default=True,
              help="proxy, app, or the name of a further container.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until interrupted.")
@click.option("--tail", type=int, default=-1, help="Only the last N lines (-1: all).")
@click.argument("pod")
@click.pass_obj
def logs(cfg: LocalConfig, namespace: str, container: str, follow: bool, tail: int, pod: str) -> None:
    """Print the log of a pod's app (or proxy); POD may be deploy/NAME."""
    cfg = absolute(cfg)
    ns, name = asyncio.run(resolve_pod(cfg, namespace, pod))
    d = pod_dir(cfg, ns, name)
    path = d / ("proxy.log" if container == "proxy" else "app.log" if container == "app" else f"app-{container}.log")
    if not path.exists():
        have = sorted(p.name.removesuffix(".log").removeprefix("app-") for p in d.glob("*.log")) if d.exists() else []
        fail(f"no {container!r} log for pod {ns}/{name} (have: {', '.join(have) or 'none'})")
    out = sys.stdout.buffer
    with open(path, "rb") as f:
        data = f.read()
        if tail >= 0:
            data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail else b""
        out.write(data)
        out.flush()
        if not follow:
            return
        try:
            while True:
                chunk = f.read()
                if chunk:
                    out.write(chunk)
                    out.flush()
                elif not path.exists():
                    return  # the pod was deleted
                else:
                    time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            return
