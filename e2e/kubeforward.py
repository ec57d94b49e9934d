"""Port-forwards through the API server (pods/portforward over a websocket) for the kube e2e target.

`PortForwarder.address(namespace, pod, port)` listens on 127.0.0.1:<free port>
and, for every connection accepted there, opens a pods/portforward websocket
(`v4.channel.k8s.io`: channel 0 carries data, channel 1 errors; the first
frame on each starts with the port, little-endian) and copies bytes both ways.
It runs its own event loop in a daemon thread, so the synchronous
`MeshTarget` can hand out `host:port` strings; `close()` stops it.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import aiohttp
import structlog
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.stream import WsApiClient
from meshlet.e2e.target import TargetError

DATA, ERROR = 0, 1
CHUNK = 64 * 1024
log = structlog.get_logger("meshlet.e2e.kubeforward")


class PortForwarder:
    def __init__(self, load_config: Callable[[], Awaitable[kclient.Configuration]], timeout: float = 30.0) -> None:
        self._load_config = load_config
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-port-forward", daemon=True)
        self._thread.start()
        self._conf: kclient.Configuration | None = None
        self._servers: dict[tuple[str, str, int], asyncio.Server] = {}
        self._connections: set[asyncio.Task[None]] = set()

    def address(self, namespace: str, pod: str, port: int) -> str:
        """`127.0.0.1:<port>` forwarding to `port` of `namespace/pod`."""
        future = asyncio.run_coroutine_threadsafe(self._listen(namespace, pod, port), self._loop)
        try:
            return future.result(self._timeout)
        except TimeoutError:
            future.cancel()
            raise TargetError(f"port-forward to {namespace}/{pod}:{port}: no listener in {self._timeout}s") from None

    async def _listen(self, namespace: str, pod: str, port: int) -> str:
        if self._conf is None:
            self._conf = await self._load_config()
        key = (namespace, pod, port)
        if key not in self._servers:
            self._servers[key] = await asyncio.start_server(
                lambda r, w: self._serve(r, w, namespace, pod, port), "127.0.0.1", 0)
        host, local_port = self._servers[key].sockets[0].getsockname()[:2]
        return f"{host}:{local_port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, namespace: str, pod: str,
                     port: int) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        ws_api = WsApiClient(configuration=self._conf)
        try:
            ctx = await kclient.CoreV1Api(ws_api).connect_get_namespaced_pod_portforward(
                pod, namespace, ports=port, _preload_content=False)
            async with ctx as ws:
                pumps = {asyncio.create_task(_to_pod(reader, ws)),
                         asyncio.create_task(_from_pod(ws, writer, f"{namespace}/{pod}:{port}"))}
                try:  # either side ending ends the connection
                    done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                    for finished in done:
                        finished.result()
                finally:
                    for pump in pumps:
                        pump.cancel()
                    await asyncio.gather(*pumps, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            log.warning("port_forward_failed", pod=f"{namespace}/{pod}", port=port,
                        error=f"{type(exc).__name__}: {exc}")
        finally:
            self._connections.discard(task)  # type: ignore[arg-type]
            await ws_api.close()
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers.values():
                server.close()
            self._servers.clear()
            for conn in list(self._connections):
                conn.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(self._timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self._timeout)


async def _to_pod(reader: asyncio.StreamReader, ws: aiohttp.ClientWebSocketResponse) -> None:
    while chunk := await reader.read(CHUNK):
        await ws.send_bytes(bytes([DATA]) + chunk)


async def _from_pod(ws: aiohttp.ClientWebSocketResponse, writer: asyncio.StreamWriter, what: str) -> None:
    """Copy channel-0 data to the local connection; the first frame of each channel starts with the port."""
    port_seen = {DATA: False, ERROR: False}
    async for msg in ws:
        data = msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
        if not data or data[0] not in port_seen:
            continue
        channel, payload = data[0], data[1:]
        if not port_seen[channel]:
            port_seen[channel], payload = True, payload[2:]
        if channel == DATA and payload:
            writer.write(payload)
            await writer.drain()
        elif channel == ERROR and payload:
            log.warning("port_forward_error", target=what, error=payload.decode(errors="replace"))
