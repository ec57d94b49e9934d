"""Finding (and, when missing, building) the load tools; versions for the report."""
from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bench.model import Machine

TOOLS_DIR = Path(__file__).resolve().parent / ".tools"
OHA_VERSION = "1.16.0"


class ToolError(RuntimeError):
    """A required program is missing and cannot be installed."""


def find_oha(install: bool = True) -> Path:
    """bench/.tools/bin/oha, else oha on PATH, else `cargo install` it into bench/.tools (niced)."""
    local = TOOLS_DIR / "bin" / "oha"
    if local.exists():
        return local
    on_path = shutil.which("oha")
    if on_path:
        return Path(on_path)
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not install or not Path(cargo).exists():
        raise ToolError("oha not found (bench/.tools/bin/oha or PATH) and cargo is not available to build it; "
                        f"install it with: cargo install oha@{OHA_VERSION} --locked --root bench/.tools")
    print(f"building oha {OHA_VERSION} into {TOOLS_DIR} (cargo, nice 19; takes minutes once)", file=sys.stderr)
    proc = subprocess.run(["nice", "-n", "19", cargo, "install", f"oha@{OHA_VERSION}", "--locked",
                           "--root", str(TOOLS_DIR)], check=False)
    if proc.returncode != 0 or not local.exists():
        raise ToolError(f"cargo install oha failed ({proc.returncode})")
    return local


def require(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise ToolError(f"missing programs: {', '.join(missing)} (Debian: apt-get install nginx haproxy wrk iproute2)")


def _version(argv: list[str], pattern: str) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, check=False, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(pattern, proc.stdout + proc.stderr)
    return m.group(1) if m else "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine(oha: Path) -> Machine:
    import os

    return Machine(
        nproc=os.cpu_count() or 0,
        cpu_model=_cpu_model(),
        kernel=platform.release(),
        python=platform.python_version(),
        tools={
            "nginx": _version(["nginx", "-v"], r"nginx/(\S+)"),
            "haproxy": _version(["haproxy", "-v"], r"version (\S+)"),
            "oha": _version([str(oha), "--version"], r"oha (\S+)"),
            "wrk": _version(["wrk", "-v"], r"wrk (\S+)"),
            "meshlet": _git_rev(),
            "uvloop": _pkg_version("uvloop"),
            "httptools": _pkg_version("httptools"),
        },
    )


def _git_rev() -> str:
    """The commit the meshlet pair ran from (+ "-dirty" with uncommitted changes in the tree)."""
    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, check=False,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, check=False, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (rev or "?") + ("-dirty" if dirty else "")


def _pkg_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "-"
