"""Frames in: the loop that cuts a read into frames and hands each to its handler.

The handler is one lookup in a 256-entry table by frame type. The connection switches tables
with its state, so the rules that depend on it cost nothing per frame: until the client's
first SETTINGS (RFC 9113 3.4) only SETTINGS is accepted, and while a header block is open
(RFC 9113 6.10) only its CONTINUATION is; any other frame is a connection error
PROTOCOL_ERROR. Unknown frame types are ignored otherwise (RFC 9113 5.5).
"""

from __future__ import annotations

from collections.abc import Callable

from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.control import Control
from tidal.frontends.grpc.h2.limits import MAX_FRAME_SIZE
from tidal.frontends.grpc.h2.receiving import Receiver

Data = bytes | bytearray
Handler = Callable[["Dispatcher", Data, int, int, int, int], None]


class Dispatcher(Receiver, Control):
    """Frame dispatch of ``H2Connection``; a mixin, whose state the connection's ``__init__``
    sets (``_handlers`` starts as ``PREFACE``)."""

    _handlers: list[Handler]
    _settings_seen: bool

    def _frames(self, data: Data, pos: int) -> int:
        """Handle every complete frame in ``data`` from ``pos``; return where parsing stopped
        (at the end, at an incomplete frame, or where the connection closed or paused)."""
        unpack = f.HEAD.unpack_from
        size = len(data)
        while size - pos >= 9 and not (self._closed or self._paused):
            high, low, kind, flags, stream_id = unpack(data, pos)
            length = high << 8 | low
            if length > MAX_FRAME_SIZE:
                raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, f"frame of {length} bytes")
            start = pos + 9
            end = start + length
            if end > size:
                break
            pos = end
            self._handlers[kind](self, data, start, end, flags, stream_id & 0x7FFFFFFF)
        return pos

    def _first_settings(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        if flags & f.ACK:
            self._not_settings(data, start, end, flags, stream_id)
        self._settings_seen = True
        self._handlers = NORMAL
        self._on_settings(data, start, end, flags, stream_id)

    def _not_settings(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        raise f.H2ConnectionError(f.PROTOCOL_ERROR, "the preface must be SETTINGS")

    def _not_continuation(
        self, data: Data, start: int, end: int, flags: int, stream_id: int
    ) -> None:
        raise f.H2ConnectionError(f.PROTOCOL_ERROR, "expected CONTINUATION")

    def _expect_continuation(self) -> None:
        self._handlers = CONTINUING

    def _expect_any(self) -> None:
        self._handlers = NORMAL


NORMAL: list[Handler] = [Dispatcher._ignore] * 256
for _kind, _handler in (
    (f.DATA, Dispatcher._on_data),
    (f.HEADERS, Dispatcher._on_headers),
    (f.PRIORITY, Dispatcher._on_priority),
    (f.RST_STREAM, Dispatcher._on_rst_stream),
    (f.SETTINGS, Dispatcher._on_settings),
    (f.PUSH_PROMISE, Dispatcher._on_push_promise),
    (f.PING, Dispatcher._on_ping_frame),
    (f.GOAWAY, Dispatcher._on_goaway),
    (f.WINDOW_UPDATE, Dispatcher._on_window_update),
    (f.CONTINUATION, Dispatcher._on_continuation),  # out of place: a connection error
):
    NORMAL[_kind] = _handler
PREFACE: list[Handler] = [Dispatcher._not_settings] * 256
PREFACE[f.SETTINGS] = Dispatcher._first_settings
CONTINUING: list[Handler] = [Dispatcher._not_continuation] * 256
CONTINUING[f.CONTINUATION] = Dispatcher._on_continuation
