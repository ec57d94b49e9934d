"""Choosing an isolated slot (bridge, prefix, ranges) for a test mesh."""
from __future__ import annotations

import ipaddress
from pathlib import Path

from meshlet.e2e.scenarios.harness import (
    host_links,
    host_networks,
    isolated_settings,
    pick_slot,
)

N = ipaddress.IPv4Network


def test_pick_slot_skips_taken() -> None:
    assert pick_slot(3, [], set()) == 3
    assert pick_slot(3, [N("198.18.53.0/24")], set()) == 4
    assert pick_slot(3, [], {"mle2e3", "mle2e4"}) == 5
    assert pick_slot(3, [N("198.18.0.0/16")], set()) == 3  # a default mesh's wider range does not block
    assert pick_slot(199, [], {"mle2e199"}) == 0


def test_isolated_settings_env(tmp_path: Path) -> None:
    s = isolated_settings(tmp_path, seed=7)
    env = s.env({})
    assert env["MESHLET_STATE_DIR"] == str(tmp_path)
    assert len(env["MESHLET_BRIDGE"]) <= 15 and len(env["MESHLET_NETNS_PREFIX"]) <= 7
    assert N(env["MESHLET_POD_CIDR"]).subnet_of(N("198.18.0.0/16"))
    assert N(env["MESHLET_SERVICE_CIDR"]).subnet_of(N("198.19.0.0/16"))


def test_host_probes_read_real_interfaces() -> None:
    assert "lo" in host_links()
    assert N("127.0.0.0/8") in host_networks()


def test_reap_orphans_only_touches_dead_owners(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from meshlet.e2e.scenarios.harness import OWNER_FILE, reap_orphans

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    alive = tmp_path / "meshlet-e2e-alive"
    orphan = tmp_path / "meshlet-e2e-orphan"
    creating = tmp_path / "meshlet-e2e-creating"
    for d in (alive, orphan, creating):
        d.mkdir()
    # names and ranges no mesh uses: the reaper's `meshlet down` must not touch anyone's mesh
    settings = {"bridge": "mlreaptest", "netns_prefix": "rpt-", "pod_cidr": "198.18.255.0/24",
                "service_cidr": "198.19.255.0/24"}
    (alive / OWNER_FILE).write_text(json.dumps({"pid": 1, "settings": settings}))
    (orphan / OWNER_FILE).write_text(json.dumps({"pid": int(dead), "settings": settings}))
    # the orphan has no mesh running: `meshlet down` on it is harmless, and the dir is only
    # removed when it is a real temp dir, so here it stays
    assert reap_orphans(tmp_path) == [orphan]
