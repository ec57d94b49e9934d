"""The Dockerfile, checked statically (no Docker engine here) and by building its package.

The build context is the repository filtered by .dockerignore; a wheel built from
exactly that context must hold every entrypoint the pod specs run (control plane,
proxy, proxy-init, the sample apps), so `pip install .` in the image gives a
working image.
"""
from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from meshlet.controller.cli.install import render_control_plane
from meshlet.controller.cli.install_certs import IdentityFiles, fill_certificates
from meshlet.controller.cli.install_values import default_values

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINTS = ("meshlet.proxy", "meshlet.proxy.init", "meshlet.destination", "meshlet.identity", "meshlet.injector")


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        bare = pat[3:] if pat.startswith("**/") else None
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, pat) or (bare is not None and fnmatch.fnmatch(parts[i - 1], bare)):
                return True
    return False


def _context(dest: Path) -> Path:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for rel in tracked:
        if _ignored(rel, patterns) or not (ROOT / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


def test_dockerfile_shape() -> None:
    ins = _instructions()
    assert ins[0] == ("FROM", "python:3.11-slim-bookworm")
    runs = " ".join(arg for op, arg in ins if op == "RUN")
    assert re.search(r"apt-get install .*iptables", runs) and "iproute2" in runs
    assert "pip install" in runs and re.search(r"pip install [^&]*\s\.(\s|$)", runs)
    assert ("COPY", ". /src") in ins
    assert ("USER", "1337:1337") in ins, "the image's default user is the proxy's uid/gid 1337"
    assert "useradd --uid 1337 --gid 1337" in runs
    assert ins[-1] == ("CMD", '["python", "-m", "meshlet.proxy"]')


def test_control_plane_runs_the_images_entrypoints_as_1337() -> None:
    values = fill_certificates(default_values(), "meshlet", IdentityFiles())
    for doc in render_control_plane(values, "meshlet"):
        if doc["kind"] != "Deployment":
            continue
        (c,) = doc["spec"]["template"]["spec"]["containers"]
        assert c["image"].startswith("meshlet/meshlet:")
        assert c["command"] == ["python"] and c["args"][0] == "-m" and c["args"][1] in ENTRYPOINTS
        assert c["securityContext"]["runAsUser"] == 1337


def _sample_modules() -> set[str]:
    mods = set()
    for manifest in (ROOT / "e2e" / "apps").rglob("*.yaml"):
        for doc in yaml.safe_load_all(manifest.read_text()):
            text = yaml.safe_dump(doc)
            mods.update(re.findall(r"meshlet\.e2e\.apps\.[\w.]+", text))
    return mods


def test_wheel_from_the_docker_context_holds_every_entrypoint(tmp_path: Path) -> None:
    ctx = _context(tmp_path / "context")
    assert not (ctx / "tests").exists() and not (ctx / ".git").exists()
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-q", "-w", str(out), str(ctx)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("meshlet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for mod in ENTRYPOINTS:
        assert f"{mod.replace('.', '/')}/__main__.py" in names, f"{mod} is not runnable with python -m"
    samples = _sample_modules()
    assert samples, "no sample app commands found"
    for mod in samples:
        path = mod.replace(".", "/")
        assert f"{path}.py" in names or f"{path}/__main__.py" in names, f"sample app module {mod} missing"
    assert "meshlet/e2e/apps/bookinfo/bookinfo.yaml" in names
    for sample in ("bookinfo", "httpbin", "emojivoto"):
        assert (ctx / "e2e" / "apps" / sample).is_dir(), f"the Dockerfile copies e2e/apps/{sample}"
