"""Helpers shared by the local-mode verbs (up, down, exec, logs, check)."""
from __future__ import annotations

import os
import sys
from typing import NoReturn

import click
from meshlet.controller.config import LocalConfig


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def require_root(verb: str) -> None:
    if os.geteuid() != 0:
        fail(f"meshlet {verb} must run as root: it manages network namespaces, veths and iptables "
             f"(try: sudo meshlet {verb} ...)")


async def resolve_pod(cfg: LocalConfig, namespace: str, target: str) -> tuple[str, str]:
    """(namespace, pod) for POD or deploy/NAME (its first ready pod); a clear error if none."""
    from meshlet.controller.local.resources import DEPLOYMENT_ANNOTATION
    from meshlet.controller.store import open_local_store

    if not cfg.db_path.exists():
        fail(f"no local mesh in {cfg.state_dir} (run meshlet up first)")
    store = open_local_store(cfg, create=False)
    try:
        pods, _ = await store.list("Pod", namespace)
    finally:
        await store.close()
    kind, _, name = target.rpartition("/")
    if kind in ("deploy", "deployment", "deployments", "deployment.apps"):
        mine = [p for p in pods if p.metadata.annotations.get(DEPLOYMENT_ANNOTATION) == name]
        mine.sort(key=lambda p: (not (p.status and p.status.ready), p.name))
        if not mine:
            fail(f"deployment {namespace}/{name} has no pods")
        return namespace, mine[0].name
    if kind not in ("", "pod", "pods", "po"):
        fail(f"cannot resolve {target!r}: use POD, pod/POD or deploy/NAME")
    if not any(p.name == name for p in pods):
        known = ", ".join(p.name for p in pods) or "none"
        fail(f"pod {name!r} not found in namespace {namespace!r} (pods there: {known})")
    return namespace, name


def absolute(cfg: LocalConfig) -> LocalConfig:
    """The config with an absolute state dir: child processes run elsewhere (cwd /)."""
    from dataclasses import replace

    return cfg if cfg.state_dir.is_absolute() else replace(cfg, state_dir=cfg.state_dir.absolute())
