"""`meshlet exec [-n NS] POD -- CMD...`: run a command inside a pod's network namespace.

It runs as the ordinary uid/gid `LocalConfig.exec_uid` (1000) through
`ip netns exec` + `setpriv`, so its traffic is intercepted exactly like the
app's (in a meshed pod it goes through the proxy) and names resolve from the
pod's hosts file. stdio is passed through; the exit code is CMD's.
"""
from __future__ import annotations

import asyncio
import os

import click
from meshlet.controller.cli._local import absolute, fail, require_root, resolve_pod
from meshlet.controller.config import LocalConfig
from meshlet.controller.local.names import pod_names
from meshlet.controller.local.netns import RUN_NETNS
from meshlet.controller.local.process import netns_argv


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--uid", type=int, default=None, help="Run as this uid instead of LocalConfig.exec_uid.")
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(cfg: LocalConfig, namespace: str, uid: int | None, pod: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a pod's network namespace as uid 1000.

    POD is a pod name or deploy/NAME (a ready pod of that Deployment), e.g.
    `meshlet exec -n demo deploy/web -- curl -s http://web/`.
    """
    cfg = absolute(cfg)
    require_root("exec")
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        fail("no command given: meshlet exec POD -- CMD...")
    ns, name = asyncio.run(resolve_pod(cfg, namespace, pod))
    netns = pod_names(cfg.netns_prefix, ns, name).netns
    if not (RUN_NETNS / netns).exists():
        fail(f"pod {ns}/{name} has no network namespace {netns} (is the mesh up?)")
    run_as = cfg.exec_uid if uid is None else uid
    argv = netns_argv(netns, tuple(command), uid=run_as, gid=run_as)
    env = dict(os.environ) | {"HOME": "/tmp", "POD_NAME": name, "POD_NAMESPACE": ns}
    try:
        os.execvpe(argv[0], list(argv), env)
    except OSError as e:
        fail(f"cannot run {' '.join(argv)}: {e}")
