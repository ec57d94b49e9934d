"""Regenerates the betterproto2 + grpclib code in gen/ from proto/ (the same tool and options as api/).

Usage: python e2e/apps/emojivoto/generate.py [--check]
With --check, exits 1 when the committed code differs from a fresh generation.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "proto"
GEN = HERE / "gen"


def generate(out: Path) -> None:
    import subprocess

    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}",
                    f"--python_betterproto2_out={out}",
                    "--python_betterproto2_opt=client_generation=async",
                    "--python_betterproto2_opt=server_generation=async", *protos],
                   check=True, cwd=PROTO)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.py")}


def stale() -> list[str]:
    """Generated files that differ from a fresh generation (empty when up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        fresh, committed = tree(Path(tmp)), tree(GEN)
    return sorted(k for k in set(fresh) | set(committed) if fresh.get(k) != committed.get(k))


def main() -> int:
    if "--check" in sys.argv:
        diff = stale()
        if diff:
            print("generated code in e2e/apps/emojivoto/gen is stale; run "
                  "`python e2e/apps/emojivoto/generate.py`:", *diff, sep="\n  ")
            return 1
        return 0
    if GEN.exists():
        shutil.rmtree(GEN)
    generate(GEN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
