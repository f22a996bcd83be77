"""The control frames a client sends (RFC 9113 section 6): SETTINGS (the peer's limits and its
initial stream window), WINDOW_UPDATE (send-side flow control), PING, PRIORITY, RST_STREAM,
GOAWAY and PUSH_PROMISE.

Every handler takes the frame as ``(data, start, end, flags, stream_id)``: its payload is
``data[start:end]``, not copied. A connection error raises ``H2ConnectionError``; a stream
error resets that stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.sending import Sender
from tidal.frontends.grpc.h2.states import RESET_RECEIVED

Data = bytes | bytearray


class Control(Sender):
    """The control-frame handlers of ``H2Connection``; a mixin, whose state the connection's
    ``__init__`` sets."""

    _last_id: int
    _peer_initial: int
    _settings_credit: float

    # -- SETTINGS -------------------------------------------------------------------------

    def _on_settings(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        if stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if end > start:
                raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if (end - start) % 6:
            raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes")
        self._settings_credit -= 1.0  # refilled by the upkeep tick (limits.SETTINGS_RATE)
        if self._settings_credit < 0:
            raise f.H2ConnectionError(f.ENHANCE_YOUR_CALM, "too many SETTINGS")
        for key, value in f.parse_settings(data, start, end):
            apply = _SETTINGS.get(key)
            if apply is not None:  # others (MAX_CONCURRENT_STREAMS: pushes, never made) pass
                apply(self, value)
        self._emit(f.SETTINGS_ACK)
        if self._blocked:
            self._pump_blocked()

    def _set_initial_window(self, value: int) -> None:
        if value > f.MAX_WINDOW:
            raise f.H2ConnectionError(f.FLOW_CONTROL_ERROR, "initial window too large")
        delta = value - self._peer_initial
        self._peer_initial = value
        for stream in self._streams.values():
            stream.send_window += delta
            if stream.send_window > f.MAX_WINDOW:
                raise f.H2ConnectionError(f.FLOW_CONTROL_ERROR, "stream window overflow")

    def _set_max_frame(self, value: int) -> None:
        if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, f"invalid MAX_FRAME_SIZE {value}")
        self._peer_max_frame = value

    def _set_enable_push(self, value: int) -> None:
        if value > 1:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "invalid ENABLE_PUSH")

    def _set_table_size(self, value: int) -> None:
        self._encoder.table_size(value)

    # -- WINDOW_UPDATE --------------------------------------------------------------------

    def _on_window_update(
        self, data: Data, start: int, end: int, flags: int, stream_id: int
    ) -> None:
        if end - start != 4:
            raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE of other than 4 bytes")
        increment = f.u32(data, start)
        if not stream_id:
            self._grow_connection_window(increment)
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_id:
                raise f.H2ConnectionError(f.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return  # a closed stream: allowed for a while after it closed (RFC 9113 5.1)
        if not increment:
            self._abandon(stream, f.PROTOCOL_ERROR)
            return
        stream.send_window += increment
        if stream.send_window > f.MAX_WINDOW:
            self._abandon(stream, f.FLOW_CONTROL_ERROR)
            return
        if stream_id in self._blocked:
            self._pump(stream)

    def _grow_connection_window(self, increment: int) -> None:
        if not increment:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
        self._send_window += increment
        if self._send_window > f.MAX_WINDOW:
            raise f.H2ConnectionError(f.FLOW_CONTROL_ERROR, "connection window overflow")
        if self._blocked:
            self._pump_blocked()

    # -- PING, PRIORITY, RST_STREAM, GOAWAY, PUSH_PROMISE ---------------------------------

    def _on_ping_frame(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        if end - start != 8:
            raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "PING of other than 8 bytes")
        if stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "PING on a stream")
        if flags & f.ACK:
            self._on_ping_ack(data[start:end])
        else:
            self._emit(f.ping_ack(bytes(data[start:end])))
            self._on_ping()

    def _on_priority(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        if not stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if end - start != 5:
            self._reset(stream_id, f.FRAME_SIZE_ERROR)
        elif f.u32(data, start) == stream_id:  # RFC 9113 5.3.1: a stream cannot depend on itself
            self._reset(stream_id, f.PROTOCOL_ERROR)

    def _on_rst_stream(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        if end - start != 4:
            raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "RST_STREAM of other than 4 bytes")
        if not stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if stream_id > self._last_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        stream = self._streams.get(stream_id)
        if stream is not None:  # the client cancelled the call
            self._remember_reset(stream_id, RESET_RECEIVED)
            self._drop(stream)
        self._count_reset()

    def _on_goaway(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        if stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "GOAWAY on a stream")
        self._stopping = True  # the client is leaving: close once its calls end
        if not self._streams:
            self._close()

    def _on_push_promise(
        self, data: Data, start: int, end: int, flags: int, stream_id: int
    ) -> None:
        raise f.H2ConnectionError(f.PROTOCOL_ERROR, "a client cannot push")

    def _ignore(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        """A frame of an unknown type (RFC 9113 5.5)."""

    if TYPE_CHECKING:  # ``upkeep.Upkeep``'s, later in the connection's MRO

        def _on_ping(self) -> None: ...
        def _on_ping_ack(self, payload: bytes | bytearray) -> None: ...


_SETTINGS: dict[int, Callable[[Control, int], None]] = {
    f.INITIAL_WINDOW_SIZE: Control._set_initial_window,
    f.MAX_FRAME_SIZE: Control._set_max_frame,
    f.ENABLE_PUSH: Control._set_enable_push,
    f.HEADER_TABLE_SIZE: Control._set_table_size,
}
