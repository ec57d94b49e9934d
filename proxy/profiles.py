"""Route configuration: one `Destination.GetProfile` stream per target, cached.

A target's compiled `Profile` is replaced as the control plane sends new ones (the next
request uses it); when the stream fails it is re-opened with backoff and jitter while the
last profile keeps applying. Until a target's first answer (or without a control plane,
or one that does not serve profiles) its profile is empty: traffic goes to the target
itself, as before profiles existed.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import OrderedDict
from typing import Any

from .config import ProxyConfig
from .profile import EMPTY_PROFILE, Profile, ProfileError, compile_profile


class ProfileTarget:
    __slots__ = ("path", "profile", "answered", "task", "connected", "version", "error", "last_used")

    def __init__(self, path: str) -> None:
        self.path = path
        self.profile: Profile = EMPTY_PROFILE
        self.answered = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.connected = False
        self.version = 0
        self.error = ""
        self.last_used = time.monotonic()

    async def wait(self, timeout: float) -> bool:
        if self.answered.is_set():
            return True
        try:
            await asyncio.wait_for(self.answered.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


class Profiles:
    def __init__(self, cfg: ProxyConfig, log: Any) -> None:
        self.cfg = cfg
        self._log = log.bind(component="profiles")
        self._targets: OrderedDict[str, ProfileTarget] = OrderedDict()
        self._channel: Any = None
        self._closed = False
        self._labels = dict(cfg.pod_labels)

    def get(self, path: str) -> ProfileTarget:
        t = self._targets.get(path)
        if t is not None:
            self._targets.move_to_end(path)
            return t
        t = self._targets[path] = ProfileTarget(path)
        if self.cfg.destination_addr is None or self._closed:
            t.answered.set()
        else:
            t.task = asyncio.get_running_loop().create_task(self._watch(t), name=f"profile {path}")
        while len(self._targets) > self.cfg.max_targets:
            _, old = self._targets.popitem(last=False)
            if old.task is not None:
                old.task.cancel()
        return t

    def snapshot(self) -> dict[str, object]:
        from .profile import describe

        return {path: {"stream_connected": t.connected, "version": t.version, "error": t.error,
                       **describe(t.profile)}
                for path, t in self._targets.items()}

    async def close(self) -> None:
        self._closed = True
        tasks = [t.task for t in self._targets.values() if t.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._channel is not None:
            self._channel.close()

    def _stub(self) -> Any:
        from grpclib.client import Channel

        from meshlet.api import destination_pb

        if self._channel is None:
            host, port = self.cfg.destination_addr  # type: ignore[misc]
            self._channel = Channel(host, port)
        return destination_pb.DestinationStub(self._channel)

    def apply(self, t: ProfileTarget, msg: Any) -> None:
        """A profile message from the stream: compiled, or the last one kept when it is bad."""
        try:
            t.profile = compile_profile(msg, self._labels, self.cfg.namespace)
            t.error = ""
        except ProfileError as e:
            t.error = str(e)
            self._log.warning("profile.rejected", path=t.path, error=str(e))
        t.version += 1

    async def _watch(self, t: ProfileTarget) -> None:
        from grpclib.const import Status
        from grpclib.exceptions import GRPCError

        from meshlet.api import destination_pb

        cfg = self.cfg
        request = destination_pb.GetDestination(path=t.path, context=destination_pb.CallerContext(
            namespace=cfg.namespace, pod=cfg.pod, service_account=cfg.service_account, labels=self._labels))
        backoff = 0.1
        while True:
            try:
                async for msg in self._stub().get_profile(request):
                    self.apply(t, msg)
                    t.connected = True
                    backoff = 0.1
                    t.answered.set()
                error = "stream ended"
            except asyncio.CancelledError:
                raise
            except GRPCError as e:
                error = f"{e.status.name}: {e.message}"
                if e.status is Status.UNIMPLEMENTED:
                    backoff = max(backoff, 5.0)  # a control plane without profiles: look again later
            except Exception as e:  # noqa: BLE001 - the control plane may be down: retry, keep the profile
                error = f"{type(e).__name__}: {e}"
                if isinstance(e, OSError) and self._channel is not None:
                    self._channel.close()
                    self._channel = None
            t.connected = False
            t.answered.set()  # waiting requests go on with the last (or the empty) profile
            delay = backoff * (0.5 + random.random())
            self._log.debug("profile.retry", path=t.path, error=error, retry_in=round(delay, 3))
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, 10.0)
