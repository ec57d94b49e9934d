"""ProxyConfig selection (pure) and how the runtime applies it (real store, fake pods)."""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import structlog
from meshlet.controller.local.pod import LocalPod, RuntimeSettings
from meshlet.controller.local.proxyconfig import (
    ANNOTATION,
    ProxyConfigError,
    ProxyConfigRule,
    ProxySettings,
    effective,
    parse_annotation,
)
from meshlet.controller.local.spec import DeploymentSpec
from meshlet.controller.model import load_text

from .test_runtime import env, live  # noqa: F401 - the fixture is used by name
from meshlet.e2e.seeds import SEED_EXAMPLES

WEB = {"app": "web", "version": "v1"}


def rule(ns: str, name: str, concurrency: int | None, labels: dict[str, str] | None = None,
         created: str = "2026-01-01T00:00:00Z") -> ProxyConfigRule:
    return ProxyConfigRule(ns, name, tuple(sorted(labels.items())) if labels else None, concurrency, created)


def conc(rules, labels=WEB, annotations=None, **kw) -> tuple[int | None, str]:
    settings, _ = effective("demo", labels, annotations or {}, rules, **kw)
    return settings.concurrency, settings.source


def test_precedence_workload_then_namespace_then_root() -> None:
    root = rule("istio-system", "default", 2)
    ns = rule("demo", "ns-wide", 3)
    workload = rule("demo", "web", 4, {"app": "web"})
    other_ns = rule("other", "x", 9)
    other_wl = rule("demo", "api", 7, {"app": "api"})
    assert conc([]) == (None, "")
    assert conc([root, other_ns]) == (2, "ProxyConfig istio-system/default")
    assert conc([root, ns, other_wl]) == (3, "ProxyConfig demo/ns-wide")
    assert conc([root, ns, workload, other_wl]) == (4, "ProxyConfig demo/web")
    # a level that does not set the field does not hide the next one
    assert conc([root, rule("demo", "web", None, {"app": "web"})]) == (2, "ProxyConfig istio-system/default")
    # root-namespace configs with a selector are not mesh-wide; a custom root namespace
    assert conc([rule("istio-system", "sel", 5, {"app": "web"})]) == (None, "")
    assert conc([rule("mesh-root", "d", 6), root], root_namespace="mesh-root") == (6, "ProxyConfig mesh-root/d")


def test_oldest_wins_on_one_level() -> None:
    new = rule("demo", "a-new", 2, created="2026-02-01T00:00:00Z")
    old = rule("demo", "z-old", 3, created="2026-01-01T00:00:00Z")
    assert conc([new, old]) == (3, "ProxyConfig demo/z-old")
    assert conc([rule("demo", "b", 2), rule("demo", "a", 5)]) == (5, "ProxyConfig demo/a")


def test_annotation_and_mesh_default() -> None:
    ann = {ANNOTATION: "concurrency: 3\nterminationDrainDuration: 5s\n"}
    assert conc([], annotations=ann) == (3, f"annotation {ANNOTATION}")
    assert conc([rule("istio-system", "default", 2)], annotations=ann)[0] == 2  # ProxyConfig overrides
    assert conc([], annotations=ann, mesh_default=1)[0] == 3
    assert conc([], mesh_default=2) == (2, "MeshConfig defaultConfig")
    assert conc([], annotations={ANNOTATION: "holdApplicationUntilProxyStarts: true"}, mesh_default=2)[0] == 2
    settings, problem = effective("demo", WEB, {ANNOTATION: "concurrency: lots"}, [], mesh_default=2)
    assert settings.concurrency == 2 and "concurrency must be a whole number" in problem


def test_parse_annotation_errors_name_the_problem() -> None:
    assert parse_annotation("") is None
    assert parse_annotation("{concurrency: 0}") == 0
    for bad, why in (("[1, 2]", "mapping"), ("concurrency: -1", ">= 0"), ("concurrency: true", "whole number"),
                     ("concurrency: [", "not YAML")):
        with pytest.raises(ProxyConfigError, match=why):
            parse_annotation(bad)


def test_settings_env() -> None:
    assert ProxySettings().env() == {}
    assert ProxySettings(2, "x").env() == {"MESHLET_PROXY_CONCURRENCY": "2"}


def test_rule_from_the_seed_resource() -> None:
    seed = (SEED_EXAMPLES / "13-proxy-resources.yaml")
    pcs = [r for r in load_text(seed.read_text() if seed.exists() else SEED) if r.kind == "ProxyConfig"]
    rules = [ProxyConfigRule.from_resource(r) for r in pcs]
    assert [(r.namespace, r.name, r.concurrency, r.match_labels) for r in rules] == [
        ("istio-system", "default", 2, None)]
    assert conc(rules) == (2, "ProxyConfig istio-system/default")


SEED = """
apiVersion: networking.istio.io/v1alpha3
kind: ProxyConfig
metadata: {name: default, namespace: istio-system}
spec: {concurrency: 2}
"""


def test_pod_passes_concurrency_and_labels_to_its_proxy(tmp_path) -> None:
    from meshlet.controller.config import LocalConfig

    deploy = DeploymentSpec.from_obj({"metadata": {"name": "web", "namespace": "demo"}, "spec": {"template": {
        "metadata": {"labels": WEB}, "spec": {"containers": [{"name": "app", "command": ["app"]}]}}}})
    settings = RuntimeSettings(local=LocalConfig(state_dir=tmp_path))

    def spec_env(proxy: ProxySettings | None) -> dict[str, str]:
        pod = LocalPod(settings, deploy, "web-abcde", ip=ipaddress.IPv4Address("198.18.0.9"), meshed=True,
                       on_change=lambda: None, log=structlog.get_logger(), render=lambda p: ("", "", ""),
                       proxy=proxy)
        return dict(pod._proxy_spec().env)

    env0 = spec_env(None)
    assert "MESHLET_PROXY_CONCURRENCY" not in env0
    assert json.loads(env0["MESHLET_PROXY_POD_LABELS"]) == WEB | {"pod-template-hash": deploy.template_hash}
    assert spec_env(ProxySettings(2, "ProxyConfig istio-system/default"))["MESHLET_PROXY_CONCURRENCY"] == "2"
    # the proxy reads the variable as its own configuration
    from meshlet.proxy.config import ProxyConfig

    cfg = ProxyConfig.from_env(spec_env(ProxySettings(2)))
    assert cfg.concurrency == 2 and dict(cfg.pod_labels)["version"] == "v1"


async def test_runtime_rolls_pods_when_their_proxy_config_changes(env):  # noqa: F811
    runtime, store = env
    await runtime.reconcile()
    first = live(runtime)
    assert all(p.proxy_settings.concurrency is None for p in first)
    for p in first:
        p.set_ready()
    await store.apply(load_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n---\n"
                                + SEED.replace("{name: default", "{name: mesh-wide")))
    await runtime.reconcile()
    new = [p for p in live(runtime) if p not in first]
    assert len(new) == 2 and all(p.proxy_settings.concurrency == 2 for p in new)
    assert new[0].proxy_settings.source == "ProxyConfig istio-system/mesh-wide"
    for p in new:
        p.set_ready()
    await runtime.reconcile()
    assert live(runtime) == sorted(new, key=lambda p: p.name) and all(p.stopped for p in first)
    # unchanged settings: nothing restarts; a namespace-level one overrides the root's
    await runtime.reconcile()
    assert live(runtime) == sorted(new, key=lambda p: p.name)
    await store.apply(load_text(SEED.replace("istio-system", "demo").replace("concurrency: 2", "concurrency: 3")))
    await runtime.reconcile()
    third = [p for p in live(runtime) if p not in new]
    assert sorted(p.proxy_settings.concurrency for p in third) == [3, 3]
    # the same value from another ProxyConfig (workload level now) restarts nothing
    await store.apply(load_text(SEED.replace("istio-system", "demo").replace("{name: default", "{name: web")
                                .replace("spec: {concurrency: 2}",
                                         "spec: {concurrency: 3, selector: {matchLabels: {app: web}}}")))
    await runtime.reconcile()
    assert all(p in third for p in live(runtime) if p not in new)
    assert runtime.proxy_settings(third[0].deploy).source == "ProxyConfig demo/web"
