"""Tiny HTTP probe (one GET, status line only) used for /ready checks from the host."""
from __future__ import annotations

import asyncio


async def http_status(host: str, port: int, path: str = "/ready", timeout: float = 2.0) -> int | None:
    """The HTTP status of GET path, or None if nothing answers in time."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (TimeoutError, OSError, ValueError):
        return None
    finally:
        if writer is not None:
            writer.close()


async def http_ok(host: str, port: int, path: str = "/ready", timeout: float = 2.0) -> bool:
    return await http_status(host, port, path, timeout) == 200


async def wait_http_ok(host: str, port: int, path: str = "/ready", *, deadline: float, interval: float = 0.2) -> bool:
    """Poll until 200 or the loop time `deadline` passes."""
    loop = asyncio.get_running_loop()
    while True:
        if await http_ok(host, port, path):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)
