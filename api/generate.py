"""Regenerates the betterproto2 + grpclib code in api/gen from api/proto.

Usage: python api/generate.py [--check]
With --check, generates into a temporary folder and exits 1 when the committed
code differs (the generated code is stale).
"""
from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

API = Path(__file__).resolve().parent
PROTO = API / "proto"
GEN = API / "gen"


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{PROTO}",
            f"--python_betterproto2_out={out}",
            "--python_betterproto2_opt=client_generation=async",
            "--python_betterproto2_opt=server_generation=async",
            *protos,
        ],
        check=True,
        cwd=PROTO,
    )


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*.py")
    }


def main() -> int:
    if "--check" in sys.argv:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            fresh, committed = tree(Path(tmp)), tree(GEN)
            if fresh != committed:
                stale = sorted(set(fresh) ^ set(committed) | {k for k in fresh if fresh.get(k) != committed.get(k)})
                print("generated code in api/gen is stale; run `make proto`:", *stale, sep="\n  ")
                return 1
            return 0
    if GEN.exists():
        shutil.rmtree(GEN)
    generate(GEN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
