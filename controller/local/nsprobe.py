"""Readiness probes that run *inside* a pod's network namespace, from the runtime's loop.

A socket belongs to the network namespace it was created in. So a short-lived
thread enters the pod's netns (`setns(2)` through libc: Python 3.11 has no
`os.setns`), creates a socket, returns to the host namespace and hands the
socket back; connect/send/receive then run on the asyncio loop as usual.
The probe connects from inside the pod, so the pod's capture rules leave it
alone (like the kubelet probing through Istio's rewritten probe port) and it
reaches the app directly, whether the pod is meshed or not.
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import threading
from pathlib import Path

CLONE_NEWNET = 0x40000000
RUN_NETNS = Path("/run/netns")


class ProbeError(OSError):
    """The probe could not even be attempted (no such netns, setns refused)."""


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise ProbeError(err, f"setns: {os.strerror(err)}")


def _socket_in(netns: str, family: int) -> socket.socket:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(RUN_NETNS / netns, os.O_RDONLY)
        except OSError as e:
            raise ProbeError(e.errno, f"network namespace {netns}: {e.strerror}") from None
        try:
            _setns(target)
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            finally:
                _setns(own)  # if this fails the thread dies with the error: it is never reused
        finally:
            os.close(target)
    finally:
        os.close(own)
    sock.setblocking(False)
    return sock


async def socket_in_netns(netns: str, family: int = socket.AF_INET) -> socket.socket:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[socket.socket] = loop.create_future()

    def deliver(sock: socket.socket | None, exc: BaseException | None) -> None:
        if fut.done():  # the caller gave up meanwhile
            if sock is not None:
                sock.close()
        elif exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(sock)  # type: ignore[arg-type]

    def work() -> None:
        try:
            sock = _socket_in(netns, family)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(deliver, None, e)
        else:
            loop.call_soon_threadsafe(deliver, sock, None)

    threading.Thread(target=work, name=f"netns-socket-{netns}", daemon=True).start()
    return await fut


async def tcp_probe(netns: str, host: str, port: int, timeout: float) -> bool:
    """Does host:port accept a connection, seen from inside the netns?"""
    try:
        sock = await socket_in_netns(netns)
    except OSError:
        return False
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
        return True
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()


async def http_probe(netns: str, host: str, port: int, path: str, timeout: float) -> bool:
    """GET path from inside the netns; success is a 2xx/3xx status (Kubernetes' rule)."""
    try:
        sock = await socket_in_netns(netns)
    except OSError:
        return False
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
                                          "User-Agent: meshlet-probe\r\n\r\n".encode())
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk:
                    break
                head += chunk
        parts = head.split(b"\r\n", 1)[0].split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except (OSError, TimeoutError):
        return False
    finally:
        sock.close()
