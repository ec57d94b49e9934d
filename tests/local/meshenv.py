"""Helpers of the local-runtime tests: an isolated mesh (own bridge, prefix, CIDRs, state dir)."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"


def is_root() -> bool:
    return os.geteuid() == 0


def free_octet() -> int:
    """A third octet X with neither 198.18.X.0/24 nor 198.19.X.0/24 routed yet on this host."""
    routes = subprocess.run(["ip", "-4", "route", "show"], check=False, capture_output=True, text=True).stdout
    for _ in range(100):
        x = random.randint(160, 250)
        if f"198.18.{x}." not in routes and f"198.19.{x}." not in routes:
            return x
    raise RuntimeError("no free 198.18.X.0/24 test range")


@dataclass(frozen=True)
class MeshEnv:
    state_dir: Path
    bridge: str
    prefix: str
    octet: int

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ) | {
            "MESHLET_STATE_DIR": str(self.state_dir),
            "MESHLET_BRIDGE": self.bridge,
            "MESHLET_NETNS_PREFIX": self.prefix,
            "MESHLET_POD_CIDR": f"198.18.{self.octet}.0/24",
            "MESHLET_SERVICE_CIDR": f"198.19.{self.octet}.0/24",
        }

    def meshlet(self, *args: str, timeout: float = 180, check: bool = False,
                extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "meshlet.controller.cli.main", *args],
                              check=False, env=self.env | (extra_env or {}), capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"meshlet {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc


def new_mesh_env(tmp: Path) -> MeshEnv:
    tag = "".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3))
    return MeshEnv(state_dir=tmp / "state", bridge=f"mltb{tag}", prefix=f"ml{tag}-", octet=free_octet())
