"""Kernel object names of a pod: network namespace and veth, within Linux limits.

Interface names are at most 15 bytes (IFNAMSIZ - 1), so a veth is named
`<prefix><hash>` where the hash (hex SHA-256 of "<ns>/<pod>") fills the rest.
Network namespace names are files under /run/netns: readable
`<prefix><ns>-<pod>` when short enough, otherwise shortened with a hash.
Every name starts with the mesh's prefix, which is how clean-up finds them.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

IFNAME_MAX = 15
NETNS_MAX = 63
MIN_HASH = 8
_SAFE = re.compile(r"[^a-z0-9.-]")


class KernelNameError(ValueError):
    """A prefix or object name cannot produce valid kernel names."""


def check_prefix(prefix: str) -> None:
    if not prefix or _SAFE.search(prefix) or len(prefix) > IFNAME_MAX - MIN_HASH:
        raise KernelNameError(
            f"invalid netns prefix {prefix!r}: lowercase letters, digits, '.', '-', "
            f"at most {IFNAME_MAX - MIN_HASH} characters")


def _digest(namespace: str, pod: str) -> str:
    return hashlib.sha256(f"{namespace}/{pod}".encode()).hexdigest()


@dataclass(frozen=True)
class PodNames:
    netns: str
    veth: str
    """Host side of the veth pair (on the bridge); the pod side is `eth0`."""


def pod_names(prefix: str, namespace: str, pod: str) -> PodNames:
    check_prefix(prefix)
    digest = _digest(namespace, pod)
    veth = prefix + digest[: IFNAME_MAX - len(prefix)]
    readable = _SAFE.sub("-", f"{prefix}{namespace}-{pod}".lower())
    if len(readable) <= NETNS_MAX:
        netns = readable
    else:
        netns = readable[: NETNS_MAX - 9] + "-" + digest[:8]
    return PodNames(netns=netns, veth=veth)
