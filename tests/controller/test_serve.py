"""controller/serve.py: the serving skeleton of control-plane processes, on real loopback sockets."""
import asyncio
import os
import signal
import socket
import urllib.request

import pytest
import structlog
from meshlet.api import identity_pb
from meshlet.controller.serve import (
    BackgroundTaskEnded,
    GrpcServeSpec,
    ServeState,
    admin_app,
    run_grpc,
)
from prometheus_client import CollectorRegistry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nothing(identity_pb.IdentityBase):
    pass


def spec() -> GrpcServeSpec:
    return GrpcServeSpec(name="test", handlers=[Nothing()], listen=("127.0.0.1", free_port()),
                         admin_listen=("127.0.0.1", free_port()))


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


async def poll(check, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline
        await asyncio.sleep(0.05)


def _admin(state: ServeState):
    return admin_app(ready=lambda: state.serving, registry=CollectorRegistry())


async def test_gate_then_serve_then_signal():
    s, state, gate = spec(), ServeState(), asyncio.Event()
    task = asyncio.create_task(run_grpc(s, admin=_admin(state), log=structlog.get_logger(), state=state,
                                        gate=gate.wait))
    port = s.admin_listen[1]
    await poll(lambda: asyncio.to_thread(lambda: _try(lambda: status(port, "/ready") == 503)))
    assert not state.serving and await asyncio.to_thread(status, port, "/live") == 200
    gate.set()
    await poll(lambda: asyncio.to_thread(lambda: _try(lambda: status(port, "/ready") == 200)))
    with socket.create_connection(s.listen, timeout=5):
        pass  # the gRPC port listens
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 30)
    assert not state.serving
    with pytest.raises(OSError):
        socket.create_connection(s.admin_listen, timeout=5).close()


async def test_a_failing_background_task_ends_serving_with_its_error():
    async def broken():
        await asyncio.sleep(0.01)
        raise RuntimeError("watch exploded")

    s = spec()
    with pytest.raises(RuntimeError, match="watch exploded"):
        await asyncio.wait_for(run_grpc(s, admin=_admin(ServeState()), log=structlog.get_logger(),
                                        background={"watcher": broken()}), 30)
    with pytest.raises(OSError):  # everything closed
        socket.create_connection(s.listen, timeout=5).close()


async def test_a_background_task_that_returns_is_an_error():
    async def quits():
        return None

    with pytest.raises(BackgroundTaskEnded, match="refresher ended"):
        await asyncio.wait_for(run_grpc(spec(), admin=_admin(ServeState()), log=structlog.get_logger(),
                                        background={"refresher": quits()}), 30)


def _try(check) -> bool:
    try:
        return check()
    except OSError:
        return False
