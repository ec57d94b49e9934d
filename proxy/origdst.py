"""Accepting redirected connections: the original destination and a peek at the first byte."""
from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

SO_ORIGINAL_DST = 80
SOL_IPV6 = 41


def original_dst(sock: socket.socket) -> tuple[str, int]:
    """Where the client meant to connect before iptables REDIRECT (engineering-notes §B6)."""
    if "." in sock.getsockname()[0]:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port, ip = struct.unpack("!2xH4s", raw[:8])
        return socket.inet_ntop(socket.AF_INET, ip), port
    raw = sock.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
    port, ip = struct.unpack("!2xH4x16s", raw[:24])
    return socket.inet_ntop(socket.AF_INET6, ip), port


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}") from None
    s.listen(backlog)
    s.setblocking(False)
    return s


async def peek(sock: socket.socket, timeout: float) -> bytes:
    """The first byte(s) the client sent, left in the socket; b"" after `timeout` or EOF."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        return b""
    finally:
        loop.remove_reader(fd)
    try:
        return sock.recv(16, socket.MSG_PEEK)
    except BlockingIOError:
        return b""


async def _guarded(handle: Callable[[socket.socket], Awaitable[None]], sock: socket.socket, log: Any) -> None:
    """The boundary of one accepted connection: a bug here closes it, never the listener."""
    try:
        await handle(sock)
    except asyncio.CancelledError:
        sock.close()
        raise
    except Exception as e:  # noqa: BLE001
        log.warning("connection.setup_failed", error=f"{type(e).__name__}: {e}")
        sock.close()


async def accept_loop(lsock: socket.socket, handle: Callable[[socket.socket], Awaitable[None]],
                      log: Any) -> None:
    """Accept forever, handing each socket to `handle` in its own task (cancel to stop)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    while True:
        try:
            sock, _ = await loop.sock_accept(lsock)
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                await asyncio.sleep(0.1)
                continue
            if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                continue
            raise
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(_guarded(handle, sock, log))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
