"""An injected pod, run as a kubelet would run it, gets its certificate.

No kubelet runs here, so this test plays one for a single pod: the pod is injected
(`patch.plan`), created through the real API server (admission: ServiceAccount,
validation) and read back; then, from the *stored* spec only, meshlet-init's command
runs in a fresh network namespace, the projected token is requested with the volume's
audience and expiry (TokenRequest), the trust-roots ConfigMap is written where the
volume is mounted, the downward-API and `$(VAR)` environment is resolved, and
meshlet-proxy's command starts in the netns with gid 1337. The proxy must become ready
(`:15021/healthz/ready`), which needs a certificate from the real kube-mode identity
(TokenReview of the projected token, TLS with the server name the injector set).
Paths under the pod's mountPaths are mapped to a temporary directory; names of the
control plane resolve through the netns' hosts file to identity on the veth's host side.
"""
from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from injector_helpers import make_namespace
from kubernetes_asyncio import client as kclient
from meshlet.e2e.kubeapi import KubeAPIServer, free_port
from meshlet.identity.issuer import cert_pem, key_pem, new_anchor, new_issuer
from meshlet.injector.config import InjectorConfig
from meshlet.injector.patch import json_patch
from meshlet.injector.workload import apply_ops

pytestmark = pytest.mark.root
TD = "cluster.local"


def sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60)


class PodNet:
    """A netns with a veth to the host (host side .1, pod side .2 of a random /30) and a hosts file."""

    def __init__(self) -> None:
        tag = f"{random.randrange(16**6):06x}"
        self.netns, self.host_if = f"mltk-{tag}", f"mltk{tag}"
        base = random.randrange(0, 2**14) * 4
        self.host_ip = f"10.251.{base // 256}.{base % 256 + 1}"
        self.pod_ip = f"10.251.{base // 256}.{base % 256 + 2}"
        self.etc = Path("/etc/netns") / self.netns

    def up(self, hosts: dict[str, str]) -> None:
        for argv in (
            ("ip", "netns", "add", self.netns),
            ("ip", "-n", self.netns, "link", "set", "lo", "up"),
            ("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.netns),
            ("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if),
            ("ip", "link", "set", self.host_if, "up"),
            ("ip", "-n", self.netns, "addr", "add", f"{self.pod_ip}/30", "dev", "eth0"),
            ("ip", "-n", self.netns, "link", "set", "eth0", "up"),
        ):
            sh(*argv).check_returncode()
        self.etc.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost"] + [f"{ip} {name}" for name, ip in hosts.items()]
        (self.etc / "hosts").write_text("\n".join(lines) + "\n")

    def down(self) -> None:
        sh("ip", "netns", "del", self.netns)
        sh("ip", "link", "del", self.host_if)
        shutil.rmtree(self.etc, ignore_errors=True)


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def resolve_env(container: kclient.V1Container, pod: kclient.V1Pod, pod_ip: str,
                mounts: dict[str, Path]) -> dict[str, str]:
    """The kubelet's part: downward API fields, `$(VAR)` expansion, mountPaths → local dirs."""
    fields = {"metadata.name": pod.metadata.name, "metadata.namespace": pod.metadata.namespace,
              "status.podIP": pod_ip, "spec.serviceAccountName": pod.spec.service_account_name}
    env: dict[str, str] = {}
    for e in container.env:
        if e.value_from is not None:
            env[e.name] = fields[e.value_from.field_ref.field_path]
        else:
            env[e.name] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e.value or "")
        for mount_path, local in mounts.items():
            if env[e.name].startswith(mount_path + "/"):
                env[e.name] = str(local) + env[e.name][len(mount_path):]
    return env


@pytest.mark.parametrize("server_name", [None, "meshlet-identity.elsewhere.svc"])
async def test_injected_pod_spec_runs_and_gets_a_certificate(kube_api: KubeAPIServer, kube_client: kclient.ApiClient,
                                                             tmp_path: Path, server_name: str | None) -> None:
    """With the injector's default identity server name the proxy becomes ready; told another
    name, it refuses identity's certificate (the TLS check is real) and stays unready."""
    core = kclient.CoreV1Api(kube_client)
    cp_ns, app_ns = await make_namespace(kube_client, {}), await make_namespace(kube_client, {})
    anchor, anchor_key = new_anchor(TD)
    issuer, issuer_key = new_issuer(TD, anchor, anchor_key)
    await core.create_namespaced_secret(cp_ns, kclient.V1Secret(
        metadata=kclient.V1ObjectMeta(name="meshlet-identity-issuer"), type="kubernetes.io/tls",
        string_data={"tls.crt": cert_pem(issuer).decode(), "tls.key": key_pem(issuer_key).decode(),
                     "ca.crt": cert_pem(anchor).decode()}))
    await core.create_namespaced_config_map(app_ns, kclient.V1ConfigMap(
        metadata=kclient.V1ObjectMeta(name="meshlet-identity-trust-roots"),
        data={"ca-bundle.crt": cert_pem(anchor).decode()}))
    await core.create_namespaced_service_account(app_ns, kclient.V1ServiceAccount(
        metadata=kclient.V1ObjectMeta(name="web")))

    net = PodNet()
    identity_port = free_port()
    identity_host = f"meshlet-identity.{cp_ns}.svc.cluster.local"
    cfg = InjectorConfig(proxy_image="meshlet/meshlet:test", control_plane_namespace=cp_ns,
                         identity_addr=f"{identity_host}:{identity_port}", identity_server_name=server_name)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-0", "labels": {"app": "web"}},
           "spec": {"serviceAccountName": "web",
                    "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}
    ops, reason = json_patch(pod, cfg)
    assert reason == "injected"
    await core.create_namespaced_pod(app_ns, apply_ops(pod, ops))
    stored = await core.read_namespaced_pod("web-0", app_ns)
    init, proxy = stored.spec.init_containers[0], stored.spec.init_containers[1]
    assert (init.name, proxy.name) == ("meshlet-init", "meshlet-proxy")

    # volumes, as the kubelet would mount them
    volumes = {v.name: v for v in stored.spec.volumes}
    mounts: dict[str, Path] = {}
    for m in proxy.volume_mounts:
        local = tmp_path / "volumes" / m.name
        local.mkdir(parents=True)
        vol = volumes[m.name]
        if vol.projected is not None:
            src = vol.projected.sources[0].service_account_token
            tok = await core.create_namespaced_service_account_token("web", app_ns, kclient.AuthenticationV1TokenRequest(
                spec=kclient.V1TokenRequestSpec(audiences=[src.audience], expiration_seconds=src.expiration_seconds)))
            (local / src.path).write_text(tok.status.token)
        elif vol.config_map is not None:
            cm = await core.read_namespaced_config_map(vol.config_map.name, app_ns)
            for key, value in cm.data.items():
                (local / key).write_text(value)
        mounts[m.mount_path] = local
    env = resolve_env(proxy, stored, net.pod_ip, mounts)
    assert env["MESHLET_PROXY_IDENTITY"] == f"spiffe://{TD}/ns/{app_ns}/sa/web"

    identity = None
    proxy_proc = None
    log_path = tmp_path / "identity.log"
    try:
        net.up({identity_host: net.host_ip, f"meshlet-destination.{cp_ns}.svc.cluster.local": net.host_ip})
        identity = spawn(
            [sys.executable, "-m", "meshlet.identity", "--store", "kube", "--kubeconfig", str(kube_api.kubeconfig),
             "--namespace", cp_ns, "--trust-domain", TD, "--listen", f"{net.host_ip}:{identity_port}",
             "--admin-listen", f"127.0.0.1:{free_port()}"], log_path)
        # meshlet-init, from the stored spec
        assert init.command[:1] == ["python"]
        done = sh("ip", "netns", "exec", net.netns, sys.executable, *init.command[1:])
        assert done.returncode == 0, done.stderr
        assert "-A MESHLET_OUTPUT -m owner --gid-owner 1337 -j RETURN" in \
            sh("ip", "netns", "exec", net.netns, "iptables-save", "-t", "nat").stdout
        # meshlet-proxy, from the stored spec (gid 1337 as its securityContext says; uid stays root
        # like local mode's proxy, since this machine's Python lives under /root)
        assert proxy.command[:1] == ["python"]
        gid = str(proxy.security_context.run_as_group)
        proxy_proc = spawn(["ip", "netns", "exec", net.netns, "setpriv", "--regid", gid, "--clear-groups",
                            sys.executable, *proxy.command[1:]], tmp_path / "proxy.log", {**os.environ, **env})
        probe = proxy.readiness_probe.http_get
        url = f"http://{net.pod_ip}:{probe.port}{probe.path}"
        deadline = time.monotonic() + 120
        while True:
            assert proxy_proc.poll() is None, (tmp_path / "proxy.log").read_text()
            try:
                status = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=3).status)
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                status = 0
            if server_name is None and status == 200:
                break
            if server_name is not None and "Hostname mismatch" in (tmp_path / "proxy.log").read_text():
                assert status == 503
                break
            assert time.monotonic() < deadline, \
                f"proxy not ready:\n{(tmp_path / 'proxy.log').read_text()[-3000:]}\n{log_path.read_text()[-2000:]}"
            await asyncio.sleep(0.5)
    finally:
        for p in (proxy_proc, identity):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=20)
        net.down()
