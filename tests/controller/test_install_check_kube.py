"""`meshlet check` in Kubernetes mode without a cluster: category selection, version parsing,
pod helpers, and a real client against a loopback port where no API server listens.

Against a real kube-apiserver: tests/kube/test_check_*.py.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from kubernetes_asyncio import client as kclient
from meshlet.controller.cli.check_kube import (
    KubeCheckOptions,
    kube_categories,
    parse_version,
)
from meshlet.controller.cli.check_kube_proxy import has_proxy, proxy_ready
from meshlet.controller.cli.main import cli
from meshlet.controller.local.healthcheck import CheckFailed


def _names(opts: KubeCheckOptions) -> list[str]:
    return [c.name for c in kube_categories(opts)]


def test_categories_follow_linkerds_selection() -> None:
    assert _names(KubeCheckOptions(pre=True)) == ["kubernetes-api", "kubernetes-version", "pre-kubernetes-setup"]
    default = ["kubernetes-api", "kubernetes-version", "meshlet-existence", "meshlet-config", "meshlet-identity",
               "meshlet-webhooks", "meshlet-version"]
    assert _names(KubeCheckOptions()) == default
    assert _names(KubeCheckOptions(proxy=True)) == [*default, "meshlet-data-plane"]
    hints = {ch.hint for opts in (KubeCheckOptions(proxy=True), KubeCheckOptions(pre=True))
             for c in kube_categories(opts) for ch in c.checkers}
    doc = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text()
    missing = [h for h in hints if f"### {h}" not in doc]
    assert not missing, f"hint anchors without a section in docs/troubleshooting.md: {missing}"


def test_parse_version() -> None:
    assert parse_version("1", "29+") == (1, 29)
    assert parse_version("1", "37") == (1, 37)
    with pytest.raises(CheckFailed, match="cannot parse"):
        parse_version("1", "x")


def test_proxy_container_detection() -> None:
    proxy = kclient.V1Container(name="meshlet-proxy")
    app = kclient.V1Container(name="app")
    native = kclient.V1Pod(spec=kclient.V1PodSpec(containers=[app], init_containers=[proxy]))
    plain = kclient.V1Pod(spec=kclient.V1PodSpec(containers=[app]))
    assert has_proxy(native) and not has_proxy(plain)
    status = kclient.V1ContainerStatus(name="meshlet-proxy", ready=True, image="i", image_id="", restart_count=0)
    native.status = kclient.V1PodStatus(init_container_statuses=[status])
    assert proxy_ready(native)
    assert not proxy_ready(kclient.V1Pod(spec=native.spec, status=kclient.V1PodStatus()))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_api_server_is_a_clear_fatal_failure(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{_closed_port()}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    result = CliRunner().invoke(cli, ["check", "--kubeconfig", str(kubeconfig), "-o", "json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["success"] is False
    checks = report["categories"][0]["checks"]
    assert [c["result"] for c in checks] == ["success", "error"]
    assert "cannot reach the API server" in checks[1]["error"]
    assert checks[1]["hint"] == "docs/troubleshooting.md#k8s-api"
    assert len(report["categories"]) == 1  # fatal: nothing after it ran


def test_pre_and_proxy_need_kubernetes_mode() -> None:
    result = CliRunner().invoke(cli, ["check", "--mode", "local", "--pre"])
    assert result.exit_code == 2 and "Kubernetes mode" in result.output


async def test_clock_skew_is_a_warning_past_five_minutes() -> None:
    import datetime as dt
    import email.utils

    from meshlet.controller.cli.check_kube import KubeCheckContext, cluster_categories
    from meshlet.controller.local.healthcheck import run_checks

    (pre,) = [c for c in cluster_categories(KubeCheckOptions(pre=True)) if c.name == "pre-kubernetes-setup"]
    (skew,) = [ch for ch in pre.checkers if ch.description == "no clock skew detected"]
    for offset, expected in ((dt.timedelta(seconds=30), "success"), (dt.timedelta(minutes=7), "warning")):
        ctx = KubeCheckContext(KubeCheckOptions(pre=True))
        ctx.cache["date"] = email.utils.format_datetime(dt.datetime.now(dt.UTC) - offset, usegmt=True)
        summary = await run_checks([type(pre)(pre.name, (skew,))], ctx, lambda r: None)
        assert [r.result for r in summary.results] == [expected]
        assert summary.success
