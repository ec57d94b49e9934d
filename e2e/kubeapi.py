"""A real Kubernetes API server on loopback, for tests: etcd + kube-apiserver as processes.

The binaries are upstream Kubernetes and etcd built from Go modules by `make kube-tools`
(tests/kube/tools/build.sh) into one directory per machine. Nothing here fakes the API:
admission, RBAC, CRD schema validation, TokenRequest/TokenReview and watches are the
real server's. No kubelet, scheduler or controller-manager run, so Deployments create no
Pods and Pods stay Pending unless a test writes their status.

    tools = KubeTools.locate()
    with KubeAPIServer(tools, workdir) as api:
        api.kubeconfig        # admin (system:masters), token auth
        api.kubeconfig_for("viewer")   # authenticated, no RBAC grants
"""
from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

DEFAULT_TOOLS_DIR = Path("/var/cache/meshlet/kube-tools")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.96.0.0/16"
USERS = {"admin": "system:masters", "viewer": ""}
"""Static users of the test API server: name -> group (empty: no group beyond system:authenticated)."""


class KubeToolsMissing(RuntimeError):
    pass


class KubeAPIServerFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class KubeTools:
    etcd: Path
    kube_apiserver: Path
    helm: Path

    @classmethod
    def locate(cls, directory: Path | None = None) -> KubeTools:
        """The binaries in $MESHLET_KUBE_TOOLS (or /var/cache/meshlet/kube-tools)/bin."""
        root = directory or Path(os.environ.get("MESHLET_KUBE_TOOLS", DEFAULT_TOOLS_DIR))
        tools = cls(root / "bin" / "etcd", root / "bin" / "kube-apiserver", root / "bin" / "helm")
        missing = [p.name for p in (tools.etcd, tools.kube_apiserver, tools.helm) if not os.access(p, os.X_OK)]
        if missing:
            raise KubeToolsMissing(
                f"{', '.join(missing)} not found in {root / 'bin'}: run `make kube-tools` "
                "(builds etcd, kube-apiserver and helm from Go modules once per machine)")
        return tools


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _make_ca_and_serving(workdir: Path) -> tuple[bytes, Path, Path, Path]:
    """A CA and a serving certificate for 127.0.0.1/localhost/kubernetes.default.svc."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshlet-test-kube-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=7))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"), x509.DNSName("kubernetes.default.svc.cluster.local"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, crt_path, key_path = workdir / "ca.crt", workdir / "apiserver.crt", workdir / "apiserver.key"
    ca_path.write_bytes(_pem_cert(ca))
    crt_path.write_bytes(_pem_cert(cert))
    key_path.write_bytes(_pem_key(key))
    key_path.chmod(0o600)
    return _pem_cert(ca), ca_path, crt_path, key_path


def _kubeconfig(server: str, ca_pem: bytes, user: str, token: str) -> str:
    ca = base64.b64encode(ca_pem).decode()
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: meshlet-test\n  cluster:\n    server: {server}\n"
        f"    certificate-authority-data: {ca}\n"
        f"users:\n- name: {user}\n  user:\n    token: {token}\n"
        f"contexts:\n- name: {user}@meshlet-test\n  context:\n    cluster: meshlet-test\n    user: {user}\n"
        f"current-context: {user}@meshlet-test\n"
    )


class KubeAPIServer:
    """etcd + kube-apiserver started in `workdir`, stopped (and their data kept) on exit."""

    def __init__(self, tools: KubeTools, workdir: Path, *, start_timeout: float = 120.0,
                 apiserver_args: tuple[str, ...] = ()) -> None:
        self.tools = tools
        self.apiserver_args = apiserver_args
        """Extra kube-apiserver flags (e.g. `--watch-cache=false`), after the defaults."""
        self.workdir = Path(workdir)
        self.start_timeout = start_timeout
        self.service_account_issuer = SERVICE_ACCOUNT_ISSUER
        self._tokens = {user: secrets.token_hex(16) for user in USERS}
        self._procs: list[subprocess.Popen[bytes]] = []
        self.port = 0
        self.etcd_url = ""
        self.ca_pem = b""

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.kubeconfig_for("admin")

    @property
    def admin_token(self) -> str:
        return self._tokens["admin"]

    def kubeconfig_for(self, user: str) -> Path:
        if user not in self._tokens:
            raise KeyError(f"no test user {user!r} (known: {', '.join(USERS)})")
        return self.workdir / f"kubeconfig-{user}"

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("etcd.log", "kube-apiserver.log"):
            path = self.workdir / name
            if path.exists():
                out.append(f"--- {name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> KubeAPIServer:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_etcd()
            self._start_apiserver()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.workdir, start_new_session=True)
        finally:
            log.close()
        self._procs.append(proc)
        return proc

    def _wait(self, what: str, proc: subprocess.Popen[bytes], probe: callable) -> None:  # type: ignore[valid-type]
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise KubeAPIServerFailed(f"{what} exited with {proc.returncode}\n{self.log_tail()}")
            try:
                if probe():
                    return
            except (OSError, urllib.error.URLError, ssl.SSLError) as e:
                last = str(e)
            time.sleep(0.2)
        raise KubeAPIServerFailed(f"{what} not ready after {self.start_timeout:.0f} s ({last})\n{self.log_tail()}")

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        data = self.workdir / "etcd-data"
        if data.exists():
            shutil.rmtree(data)
        proc = self._spawn("etcd", [
            str(self.tools.etcd), "--name", "default", "--data-dir", str(data),
            "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"default=http://127.0.0.1:{peer}",
            "--log-level", "warn", "--quota-backend-bytes", str(2 * 1024**3),
            "--unsafe-no-fsync",
        ])

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:
                return b'"true"' in r.read()
        self._wait("etcd", proc, healthy)

    def _start_apiserver(self) -> None:
        self.ca_pem, ca_path, crt, key = _make_ca_and_serving(self.workdir)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.workdir / "sa.key").write_bytes(_pem_key(sa_key))
        (self.workdir / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        rows = []
        for i, (user, group) in enumerate(USERS.items()):
            rows.append(f'{self._tokens[user]},{user},uid-{i}' + (f',"{group}"' if group else ""))
        (self.workdir / "tokens.csv").write_text("\n".join(rows) + "\n")
        self.port = free_port()
        for user in USERS:
            self.kubeconfig_for(user).write_text(_kubeconfig(self.url, self.ca_pem, user, self._tokens[user]))
        proc = self._spawn("kube-apiserver", [
            str(self.tools.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={crt}", f"--tls-private-key-file={key}", f"--client-ca-file={ca_path}",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={self.service_account_issuer}",
            f"--service-account-key-file={self.workdir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.workdir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true", "--profiling=false", "--endpoint-reconciler-type=none",
            f"--cert-dir={self.workdir / 'certs'}",
            "--v=1",
            *self.apiserver_args,
        ])
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())

        def ready() -> bool:
            req = urllib.request.Request(f"{self.url}/readyz",
                                         headers={"Authorization": f"Bearer {self.admin_token}"})
            try:
                with urllib.request.urlopen(req, timeout=3, context=ctx) as r:
                    return r.status == 200
            except urllib.error.HTTPError:
                return False
        self._wait("kube-apiserver", proc, ready)
