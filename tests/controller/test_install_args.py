"""The control-plane Deployments' command lines are accepted by the components' own CLIs.

Each container runs `python -m <module> <args>`; parsing those args with the
module's click command (without running it) catches a flag renamed on either side.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import click
import pytest
from meshlet.controller.cli.install import render_control_plane
from meshlet.controller.cli.install_certs import IdentityFiles, fill_certificates
from meshlet.controller.cli.install_manifests import INJECTOR_MOUNT
from meshlet.controller.cli.install_values import default_values


def _containers() -> dict[str, dict]:
    values = fill_certificates(default_values(), "meshlet", IdentityFiles())
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
            for d in render_control_plane(values, "meshlet") if d["kind"] == "Deployment"}


@pytest.mark.parametrize("deployment", ["meshlet-destination", "meshlet-identity", "meshlet-injector"])
def test_args_parse_with_the_components_cli(deployment: str, tmp_path: Path) -> None:
    container = _containers()[deployment]
    assert container["command"] == ["python"]
    flag, module, *args = container["args"]
    assert flag == "-m"
    # files the pod mounts exist only in the pod: point them at stand-ins for path validation
    for name in ("tls.crt", "tls.key"):
        (tmp_path / name).write_text("x")
    args = [a.replace(INJECTOR_MOUNT, str(tmp_path)) for a in args]
    command = importlib.import_module(f"{module}.__main__").main
    assert isinstance(command, click.Command)
    ctx = command.make_context(module, list(args), resilient_parsing=False)
    assert ctx.params  # parsed without a usage error
    if "store" in ctx.params:
        assert ctx.params["store"] == "kube"
