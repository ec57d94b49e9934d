"""The injector Deployment that `meshlet install` renders starts a command line this injector accepts."""
from __future__ import annotations

import subprocess
import sys

import yaml
from meshlet.injector.__main__ import main

from .certs import write_self_signed


def test_installed_injector_arguments_parse(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "meshlet.controller.cli.main", "install"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    deployments = [d for d in yaml.safe_load_all(proc.stdout)
                   if d and d.get("kind") == "Deployment" and d["metadata"]["name"] == "meshlet-injector"]
    assert len(deployments) == 1
    container = deployments[0]["spec"]["template"]["spec"]["containers"][0]
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[argv.index("-m") + 1] == "meshlet.injector"
    args = argv[argv.index("-m") + 2:]
    cert, key, _ = write_self_signed(tmp_path)
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        args[args.index(flag) + 1] = str(path)
    ctx = main.make_context("meshlet-injector", args)
    assert ctx.params["port"] == 8443 and ctx.params["admin_port"] == 9995
    assert ctx.params["native_sidecar"] in ("auto", "on", "off")
