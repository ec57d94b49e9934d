"""Route configuration: one `Destination.GetProfile` stream per target, cached.

A target's compiled `Profile` is replaced as the control plane sends new ones (the next
request uses it); when the stream fails it is re-opened with backoff and jitter while the
last profile keeps applying. Until a target's first answer (or without a control plane,
or one that does not serve profiles) its profile is empty: traffic goes to the target
itself, as before profiles existed. The streams ride on the proxy's one destination
channel (`dstclient.DestinationClient`); the reconnecting loop is `dstclient.ReconnectingStream`.
"""
from __future__ import annotations

from typing import Any

from .config import ProxyConfig
from .dstclient import DestinationClient, ReconnectingStream, StreamTarget, TargetCache
from .profile import EMPTY_PROFILE, Profile, ProfileError, compile_profile


class ProfileTarget(StreamTarget):
    __slots__ = ("error", "profile", "version")

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.profile: Profile = EMPTY_PROFILE
        self.version = 0
        self.error = ""


class Profiles(TargetCache[ProfileTarget]):
    """`client`: the proxy's shared destination client (one of its own when not given, closed with it)."""

    task_name = "profile"

    def __init__(self, cfg: ProxyConfig, log: Any, client: DestinationClient | None = None) -> None:
        self._own_client = client is None
        super().__init__(client or DestinationClient.from_config(cfg), cfg.max_targets)
        self.cfg = cfg
        self._log = log.bind(component="profiles")
        self._labels = dict(cfg.pod_labels)

    def new_target(self, path: str) -> ProfileTarget:
        return ProfileTarget(path)

    def snapshot(self) -> dict[str, object]:
        from .profile import describe

        return {path: {"stream_connected": t.connected, "version": t.version, "error": t.error,
                       **describe(t.profile)}
                for path, t in self.items()}

    async def close(self) -> None:
        await super().close()
        if self._own_client:
            self.client.close()

    def apply(self, t: ProfileTarget, msg: Any) -> None:
        """A profile message from the stream: compiled, or the last one kept when it is bad."""
        try:
            t.profile = compile_profile(msg, self._labels, self.cfg.namespace)
            t.error = ""
        except ProfileError as e:
            t.error = str(e)
            self._log.warning("profile.rejected", path=t.path, error=str(e))
        t.version += 1

    async def follow(self, t: ProfileTarget) -> None:
        request = self.client.request(t.path, with_labels=True)
        stream = ReconnectingStream(self.client, lambda stub: stub.get_profile(request), self._log,
                                    event="profile", path=t.path)

        def on_message(msg: Any, first: bool) -> bool:
            self.apply(t, msg)
            t.connected = True
            t.answered.set()
            return True

        def on_down(failures: int) -> None:
            t.connected = False
            t.answered.set()  # waiting requests go on with the last (or the empty) profile

        await stream.run(on_message, on_down)
