"""What both ends of the proxy's HTTP/2 connections share — the downstream `server.H2Server`
and the upstream `upstream.H2Upstream`: the h2 state (with a large connection window), writing
what h2 queued, send windows, acknowledging data once it was passed on, and waking the streams
when they may send again (window updates, new initial window, transport writable again)."""
from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

CONN_WINDOW = 16 * 1024 * 1024
"""The connection-level receive window: streams are bounded by their own 64 KiB windows, so
one stalled stream does not stall the others."""


class Connection(h2.connection.H2Connection):
    """h2's connection, except that a graceful GOAWAY (NO_ERROR) received leaves it open: h2
    closes its state at once, but the streams the peer already accepted must still finish."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        before = self.state_machine.state
        got = super()._receive_goaway_frame(frame)
        if frame.error_code == 0:
            self.state_machine.state = before
        return got


def config(client: bool) -> h2.config.H2Configuration:
    return h2.config.H2Configuration(client_side=client, header_encoding=None, validate_inbound_headers=True,
                                     normalize_inbound_headers=True)


class H2Wire:
    """Mixin of an asyncio Protocol owning an h2 `Connection`. Subclasses say whether the
    connection can still carry data (`_open`), whether bytes may still be written
    (`_writable`), and wake their streams (`_wake`: one stream, `_wake_all`)."""

    conn: Connection
    transport: Any
    metrics: Any
    write_blocked: bool

    def _open(self) -> bool: ...
    def _writable(self) -> bool: ...
    def _wake(self, sid: int) -> None: ...
    def _wake_all(self) -> None: ...

    def _start(self) -> None:
        """Our preface and SETTINGS, and the larger connection window."""
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(CONN_WINDOW - 65535)
        self.flush()

    def flush(self) -> None:
        """Write what h2 has queued (one write)."""
        data = self.conn.data_to_send()
        if data and self.transport is not None and self._writable():
            self.transport.write(data)
            if self.metrics is not None:
                self.metrics.write_bytes += len(data)

    def window(self, sid: int) -> int:
        """How much stream `sid` may send now (0 while the transport pushes back)."""
        if self.write_blocked or not self._open():
            return 0
        try:
            return min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
        except h2.exceptions.H2Error:  # the stream is gone
            return 0

    def ack(self, sid: int, n: int) -> None:
        """`n` flow-controlled bytes of `sid` were passed on: the peer may send as much again
        (a closed stream: the connection window still)."""
        if n and self._open():
            self.conn.acknowledge_received_data(n, sid)

    def _window_event(self, ev: Any) -> None:
        """A WindowUpdated or RemoteSettingsChanged event: wake the streams that may send."""
        if type(ev) is h2.events.WindowUpdated:
            if ev.stream_id == 0:
                self._wake_all()
            else:
                self._wake(ev.stream_id)
        elif h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
            self._wake_all()

    def pause_writing(self) -> None:
        self.write_blocked = True

    def resume_writing(self) -> None:
        self.write_blocked = False
        self._wake_all()


WINDOW_EVENTS = (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)
