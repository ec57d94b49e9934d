"""The injector process against the test API server: serving cert, process, webhook registration."""
from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes_asyncio import client as kclient
from meshlet.e2e.kubeapi import free_port

SELECTOR_LABEL = "meshlet-test/injector"


def write_self_signed(directory: Path) -> tuple[Path, Path, bytes]:
    """A self-signed EC P-256 serving certificate for 127.0.0.1: (cert path, key path, PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshlet-injector")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(pem)
    (directory / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return directory / "tls.crt", directory / "tls.key", pem


@dataclass
class InjectorProcess:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    ca_pem: bytes
    log_path: Path
    selector: str
    """Value of SELECTOR_LABEL on the namespaces this test's webhook serves."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def reviews(self, result: str = "") -> float:
        """Admission reviews answered so far with this result (any result when empty)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("meshlet_injector_reviews_total{") and (
                    not result or f'result="{result}"' in line):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> int | None:
        """SIGTERM, then the exit code (None when it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
                return None
        return self.proc.returncode


def start_injector(workdir: Path, kubeconfig: Path, cp_namespace: str, *extra: str,
                   timeout: float = 60.0) -> InjectorProcess:
    cert, key, pem = write_self_signed(workdir / "tls")
    port, admin_port = free_port(), free_port()
    log_path = workdir / "injector.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshlet.injector", "--tls-cert", str(cert), "--tls-key", str(key),
             "--kubeconfig", str(kubeconfig), "--host", "127.0.0.1", "--port", str(port),
             "--admin-port", str(admin_port), "--namespace", cp_namespace, "--proxy-image", "meshlet/meshlet:test",
             "--trust-roots-resync", "1", *extra],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    inj = InjectorProcess(proc, port, admin_port, pem, log_path, uuid.uuid4().hex[:12])
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"injector exited with {proc.returncode}:\n{inj.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=2) as r:
                if r.status == 200:
                    return inj
        except OSError:
            pass
        if time.monotonic() > deadline:
            inj.stop()
            raise AssertionError(f"injector not ready within {timeout}s:\n{inj.log()}")
        time.sleep(0.2)


def webhook_configuration(inj: InjectorProcess, name: str) -> kclient.V1MutatingWebhookConfiguration:
    """Like the chart's, but pointing at the local process and limited to this test's namespaces."""
    return kclient.V1MutatingWebhookConfiguration(
        metadata=kclient.V1ObjectMeta(name=name),
        webhooks=[kclient.V1MutatingWebhook(
            name="sidecar-injector.meshlet.io",
            client_config=kclient.AdmissionregistrationV1WebhookClientConfig(
                url=f"https://127.0.0.1:{inj.port}/inject",
                ca_bundle=base64.b64encode(inj.ca_pem).decode()),
            rules=[kclient.V1RuleWithOperations(operations=["CREATE"], api_groups=[""], api_versions=["v1"],
                                                resources=["pods"], scope="Namespaced")],
            namespace_selector=kclient.V1LabelSelector(match_labels={SELECTOR_LABEL: inj.selector}),
            failure_policy="Fail", side_effects="NoneOnDryRun", admission_review_versions=["v1"],
            timeout_seconds=10, reinvocation_policy="IfNeeded")])


async def make_namespace(api: kclient.ApiClient, labels: dict[str, str],
                         annotations: dict[str, str] | None = None) -> str:
    """A fresh namespace with these labels and a `default` ServiceAccount (never deleted)."""
    name = f"t-inj-{uuid.uuid4().hex[:8]}"
    core = kclient.CoreV1Api(api)
    await core.create_namespace(kclient.V1Namespace(
        metadata=kclient.V1ObjectMeta(name=name, labels=labels, annotations=annotations)))
    await core.create_namespaced_service_account(
        name, kclient.V1ServiceAccount(metadata=kclient.V1ObjectMeta(name="default")))
    return name


def pod_body(name: str, *, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {"app": "web"}, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}}


INJECTOR_RULES = [
    # what injector/README.md says the injector needs
    kclient.V1PolicyRule(api_groups=[""], resources=["namespaces"], verbs=["get"]),
    kclient.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list", "create", "update"]),
]


async def service_account_kubeconfig(api: kclient.ApiClient, server: str, ca_pem: bytes, workdir: Path,
                                     rules: list[kclient.V1PolicyRule]) -> Path:
    """A kubeconfig for a fresh ServiceAccount bound to a ClusterRole with exactly these rules
    (as the injector runs in a cluster: its own service account, RBAC-limited)."""
    ns = await make_namespace(api, {})
    core, rbac = kclient.CoreV1Api(api), kclient.RbacAuthorizationV1Api(api)
    sa = "meshlet-injector"
    await core.create_namespaced_service_account(ns, kclient.V1ServiceAccount(metadata=kclient.V1ObjectMeta(name=sa)))
    role = f"{ns}-injector"
    await rbac.create_cluster_role(kclient.V1ClusterRole(metadata=kclient.V1ObjectMeta(name=role), rules=rules))
    await rbac.create_cluster_role_binding(kclient.V1ClusterRoleBinding(
        metadata=kclient.V1ObjectMeta(name=role),
        role_ref=kclient.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
        subjects=[kclient.RbacV1Subject(kind="ServiceAccount", name=sa, namespace=ns)]))
    tok = await core.create_namespaced_service_account_token(sa, ns, kclient.AuthenticationV1TokenRequest(
        spec=kclient.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)))
    path = workdir / "injector.kubeconfig"
    ca = base64.b64encode(ca_pem).decode()
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: t\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n"
        f"users:\n- name: injector\n  user:\n    token: {tok.status.token}\n"
        "contexts:\n- name: injector@t\n  context:\n    cluster: t\n    user: injector\n"
        "current-context: injector@t\n")
    return path
