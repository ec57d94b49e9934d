"""Kernel plumbing of local pods: bridge, network namespaces, veths, iptables, name files.

All of it runs `ip`/`iptables-restore` as asyncio subprocesses (bounded by a
timeout) so the runtime's loop never blocks. Errors become `NetnsError`
naming the command and its stderr. Clean-up functions tolerate objects that
are already gone: they also run after a crash.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import signal
from pathlib import Path

from meshlet.controller.local.names import PodNames

ETC_NETNS = Path("/etc/netns")
RUN_NETNS = Path("/run/netns")
COMMAND_TIMEOUT = 30.0


class NetnsError(Exception):
    """A plumbing command failed (message names the command and its error)."""


async def run(*argv: str, stdin: bytes | None = None, check: bool = True,
              timeout: float = COMMAND_TIMEOUT) -> tuple[int, str]:
    """Run a command; return (exit code, stdout). Raise NetnsError on failure if `check`."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NetnsError(f"{' '.join(argv)}: timed out after {timeout}s") from None
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: exit {proc.returncode}: {err.decode(errors='replace').strip()}")
    return proc.returncode or 0, out.decode(errors="replace")


async def link_exists(name: str) -> bool:
    code, _ = await run("ip", "link", "show", "dev", name, check=False)
    return code == 0


async def ensure_bridge(bridge: str, gateway: ipaddress.IPv4Address, cidr: ipaddress.IPv4Network) -> None:
    """Create the bridge with the gateway address (idempotent)."""
    if not await link_exists(bridge):
        await run("ip", "link", "add", bridge, "type", "bridge")
    # pod-to-pod frames stay on the bridge: keep them out of the host's iptables
    # (br_netfilter would otherwise run them through FORWARD, which may DROP)
    await run("ip", "link", "set", bridge, "type", "bridge", "nf_call_iptables", "0", check=False)
    await run("ip", "addr", "replace", f"{gateway}/{cidr.prefixlen}", "dev", bridge)
    await run("ip", "link", "set", bridge, "up")


async def delete_link(name: str) -> None:
    await run("ip", "link", "del", name, check=False)


async def create_pod_network(names: PodNames, *, bridge: str, ip: ipaddress.IPv4Address,
                             cidr: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address) -> None:
    """netns + veth (host side on the bridge, `eth0` inside) + address + default route."""
    ns = names.netns
    await run("ip", "netns", "add", ns)
    try:
        await run("ip", "link", "add", names.veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        await run("ip", "link", "set", names.veth, "master", bridge, "up")
        await run("ip", "-n", ns, "link", "set", "lo", "up")
        await run("ip", "-n", ns, "addr", "add", f"{ip}/{cidr.prefixlen}", "dev", "eth0")
        await run("ip", "-n", ns, "link", "set", "eth0", "up")
        await run("ip", "-n", ns, "route", "add", "default", "via", str(gateway))
    except (NetnsError, asyncio.CancelledError):
        await delete_pod_network(names)
        raise


async def apply_iptables(netns: str, payload: str) -> None:
    """Replace the tables named in `payload` inside the netns, atomically."""
    await run("ip", "netns", "exec", netns, "iptables-restore", stdin=payload.encode())


def write_name_files(netns: str, hosts: str, resolv_conf: str, etc_netns: Path = ETC_NETNS) -> None:
    """Write /etc/netns/<netns>/{hosts,resolv.conf}.

    Rewritten in place, never replaced: `ip netns exec` bind-mounts the file's
    inode over /etc/hosts, so running processes only see changes made to that
    same inode. One write of a small file, then truncate.
    """
    d = etc_netns / netns
    d.mkdir(parents=True, exist_ok=True)
    for name, text in (("hosts", hosts), ("resolv.conf", resolv_conf)):
        data = text.encode()
        fd = os.open(d / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            os.close(fd)


async def netns_pids(netns: str) -> list[int]:
    code, out = await run("ip", "netns", "pids", netns, check=False)
    return [int(p) for p in out.split() if p.isdigit()] if code == 0 else []


async def kill_netns_processes(netns: str, grace: float = 5.0) -> None:
    """SIGTERM every process in the netns, SIGKILL what is left after `grace`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    sig = signal.SIGTERM
    while pids := await netns_pids(netns):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if loop.time() > deadline:
            sig = signal.SIGKILL
        if loop.time() > deadline + grace:
            raise NetnsError(f"processes {pids} in netns {netns} survive SIGKILL")
        await asyncio.sleep(0.1)


async def delete_pod_network(names: PodNames, etc_netns: Path = ETC_NETNS) -> None:
    """Remove everything of one pod's network; fine if parts are already gone."""
    if (RUN_NETNS / names.netns).exists():
        await kill_netns_processes(names.netns)
    await delete_link(names.veth)
    await run("ip", "netns", "del", names.netns, check=False)
    shutil.rmtree(etc_netns / names.netns, ignore_errors=True)


async def list_netns(prefix: str) -> list[str]:
    _, out = await run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(prefix)]


async def list_links(prefix: str) -> list[str]:
    _, out = await run("ip", "-o", "link", "show", check=False)
    links: list[str] = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            name = parts[1].strip().split("@")[0]
            if name.startswith(prefix):
                links.append(name)
    return links


async def cleanup_all(prefix: str, bridge: str | None, etc_netns: Path = ETC_NETNS) -> list[str]:
    """Remove every netns, veth, name-file dir with our prefix (and the bridge if given). Returns what was removed."""
    removed: list[str] = []
    for ns in await list_netns(prefix):
        await kill_netns_processes(ns)
        await run("ip", "netns", "del", ns, check=False)
        removed.append(f"netns {ns}")
    for link in await list_links(prefix):
        await delete_link(link)
        removed.append(f"link {link}")
    if bridge and await link_exists(bridge):
        await delete_link(bridge)
        removed.append(f"bridge {bridge}")
    if etc_netns.is_dir():
        for d in etc_netns.iterdir():
            if d.name.startswith(prefix):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"dir {d}")
    return removed
