"""Name resolution files of a pod netns (/etc/netns/<netns>/{hosts,resolv.conf}).

`ip netns exec` bind-mounts each file of /etc/netns/<netns>/ over /etc/, so a
process in the pod resolves Service names from the hosts file (nsswitch
`files` comes first). Pure rendering here; writing is in `netns.py`.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceName:
    name: str
    namespace: str
    vip: ipaddress.IPv4Address


def render_hosts(*, pod: str, namespace: str, pod_ip: ipaddress.IPv4Address,
                 services: Iterable[ServiceName], cluster_domain: str = "cluster.local") -> str:
    lines = [
        "# written by meshlet: rewritten whenever Services change",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        f"{pod_ip}\t{pod}",
    ]
    for svc in sorted(services, key=lambda s: (s.namespace, s.name)):
        names = [f"{svc.name}.{svc.namespace}.svc.{cluster_domain}", f"{svc.name}.{svc.namespace}"]
        if svc.namespace == namespace:
            names.append(svc.name)
        lines.append(f"{svc.vip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def render_resolv_conf(namespace: str, cluster_domain: str = "cluster.local") -> str:
    return (
        "# written by meshlet: names resolve from /etc/hosts; there is no DNS server\n"
        f"search {namespace}.svc.{cluster_domain} svc.{cluster_domain} {cluster_domain}\n"
        "nameserver 127.0.0.1\n"
        "options ndots:1 timeout:1 attempts:1\n"
    )
