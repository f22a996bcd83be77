"""One HTTP/2 connection serving gRPC calls (RFC 9113 as gRPC clients use it).

``H2Connection`` is an ``asyncio.Protocol``. Each ``data_received`` parses every complete frame
in the read and answers what needs no servicer (SETTINGS ACK, PING ACK, WINDOW_UPDATE) in one
write at the end. A unary call starts a task once its request has ended; a bidirectional
stream starts at its headers and reads its requests from a queue. A response's frames (headers,
message, trailers) leave in one ``transport.write``; responses finished in the same loop turn
are written together.

Flow control, both ways: the server advertises large receive windows and replenishes them as
data arrives; responses beyond the peer's windows wait, per stream, for its WINDOW_UPDATE.

Errors: a protocol violation answers GOAWAY with its error code and closes the connection; a
bad call (unknown method, bad message, failed authentication) ends that stream with a gRPC
status; the peer's RST_STREAM cancels the call's task, so the request leaves its scheduler.

This module holds frame dispatch and the connection's lifecycle. The rest are mixins of
``H2Connection``, so the per-frame path calls methods of one object with no extra hop:
``calls.CallRunner`` (a new call checked, its request messages, the task that drives the
servicer) on top of ``sending.Sender`` (response frames, send-side flow control, the batched
write). Per-stream state is ``stream.Stream``; the advertised limits are in ``limits``.
``upkeep.Upkeep`` holds what a timer drives: keepalive pings, policing the client's pings,
the idle close, and the stream-reset budget against rapid-reset floods.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.calls import CallRunner
from tidal.frontends.grpc.h2.headers import HeaderDecoder, ResponseEncoder
from tidal.frontends.grpc.h2.limits import (
    CONNECTION_WINDOW,
    LINGER_SECONDS,
    MAX_FRAME_SIZE,
    MAX_HEADER_BLOCK,
    MAX_STREAMS,
    STREAM_WINDOW,
)
from tidal.frontends.grpc.h2.messages import MessageError
from tidal.frontends.grpc.h2.stream import Stream
from tidal.frontends.grpc.h2.upkeep import Upkeep

if TYPE_CHECKING:
    from tidal.frontends.grpc.h2.server import TidalGrpcService

MAX_STREAM_ID = 2**31 - 1  # the largest stream id: a GOAWAY naming it refuses none

logger = logging.getLogger(__name__)


class H2Connection(CallRunner, Upkeep, asyncio.Protocol):
    """One client connection; see the module docstring."""

    def __init__(self, service: TidalGrpcService) -> None:
        self._service = service
        self._loop = service.loop
        self._methods = service.methods
        self._auth = service.auth
        self._limit = service.max_message_bytes
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        self._peer = ""
        self._buf = bytearray()
        self._preface = False
        self._settings_seen = False
        self._decoder = HeaderDecoder()
        self._streams: dict[int, Stream] = {}
        self._last_id = 0
        self._gone_away_at: int | None = None  # the last stream id our GOAWAY named
        self._continuation: tuple[int, int, list[bytes], int] | None = None
        self._out: list[bytes | memoryview] = []
        self._out_size = 0
        self._flush_handle: asyncio.Handle | None = None
        self._send_window = f.DEFAULT_WINDOW
        self._recv_window = CONNECTION_WINDOW
        self._peer_initial = f.DEFAULT_WINDOW
        self._peer_max_frame = f.DEFAULT_MAX_FRAME
        self._blocked: dict[int, Stream] = {}
        self._encoder = ResponseEncoder()
        self._closed = False  # no more input is read: closing, closed or lost
        self._lost = False
        self._stopping = False  # GOAWAY sent: no new streams
        self._linger: asyncio.TimerHandle | None = None
        self._upkeep_init()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._peer = (
                f"ipv6:[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"ipv4:{peer[0]}:{peer[1]}"
            )
        self._service.connections.add(self)
        # The server preface: our SETTINGS, then the connection window raised to ours.
        self._emit(
            f.settings(
                {
                    f.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                    f.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                    f.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
                    f.MAX_HEADER_LIST_SIZE: 64 * 1024,
                }
            )
            + f.window_update(0, CONNECTION_WINDOW - f.DEFAULT_WINDOW)
        )
        self._flush()
        if self._service.stopping:
            self.shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closed = True
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for stream in list(self._streams.values()):
            self._drop(stream)
        self._service.forget(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._quiet = 0  # heard from the peer: keepalive starts over (see upkeep)
        buf = self._buf
        if buf:
            buf += data
            data = buf  # type: ignore[assignment]
        try:
            if not self._preface:
                if len(data) < len(f.PREFACE):
                    if not f.PREFACE.startswith(bytes(data)):
                        raise f.H2ConnectionError(f.PROTOCOL_ERROR, "not an HTTP/2 preface")
                    if not buf:
                        buf += data
                    return
                if data[: len(f.PREFACE)] != f.PREFACE:
                    raise f.H2ConnectionError(f.PROTOCOL_ERROR, "not an HTTP/2 preface")
                self._preface = True
                used = self._frames(data, len(f.PREFACE))
            else:
                used = self._frames(data, 0)
        except f.H2ConnectionError as exc:
            self._fail(exc.code, str(exc))
            return
        except Exception:  # a bug must cost this connection at most, never the server
            logger.exception("error handling HTTP/2 frames")
            self._fail(f.INTERNAL_ERROR, "internal error")
            return
        if buf:
            del buf[:used]
        elif used < len(data):
            buf += data[used:]
        self._flush()

    def eof_received(self) -> bool | None:
        return None  # the client is gone: close, which cancels its calls

    # -- frames in ------------------------------------------------------------------------

    def _frames(self, data: bytes | bytearray, pos: int) -> int:
        """Handle every complete frame in ``data`` from ``pos``; return where parsing stopped."""
        unpack = f.HEAD.unpack_from
        size = len(data)
        while size - pos >= 9:
            high, low, kind, flags, stream_id = unpack(data, pos)
            length = high << 8 | low
            if length > MAX_FRAME_SIZE:
                raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, f"frame of {length} bytes")
            start = pos + 9
            end = start + length
            if end > size:
                break
            pos = end
            stream_id &= 0x7FFFFFFF
            if not self._settings_seen:
                if kind != f.SETTINGS or flags & f.ACK:
                    raise f.H2ConnectionError(f.PROTOCOL_ERROR, "the preface must be SETTINGS")
                self._settings_seen = True
            if self._continuation is not None and kind != f.CONTINUATION:
                raise f.H2ConnectionError(f.PROTOCOL_ERROR, "expected CONTINUATION")
            if kind == f.DATA:
                self._on_data(data, start, end, flags, stream_id)
            elif kind == f.HEADERS:
                self._on_headers(data, start, end, flags, stream_id)
            elif kind == f.WINDOW_UPDATE:
                self._on_window_update(data[start:end], stream_id)
            elif kind == f.PING:
                if length != 8:
                    raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "PING of other than 8 bytes")
                if stream_id:
                    raise f.H2ConnectionError(f.PROTOCOL_ERROR, "PING on a stream")
                if flags & f.ACK:
                    self._on_ping_ack(data[start:end])
                else:
                    self._emit(f.ping_ack(bytes(data[start:end])))
                    self._on_ping()
            elif kind == f.SETTINGS:
                self._on_settings(data[start:end], flags, stream_id)
            elif kind == f.RST_STREAM:
                self._on_rst_stream(data[start:end], stream_id)
            elif kind == f.CONTINUATION:
                self._on_continuation(data, start, end, flags, stream_id)
            elif kind == f.PRIORITY:
                if not stream_id:
                    raise f.H2ConnectionError(f.PROTOCOL_ERROR, "PRIORITY on stream 0")
                if length != 5:
                    self._reset(stream_id, f.FRAME_SIZE_ERROR)
            elif kind == f.GOAWAY:
                if stream_id:
                    raise f.H2ConnectionError(f.PROTOCOL_ERROR, "GOAWAY on a stream")
                self._stopping = True  # the client is leaving: close once its calls end
                if not self._streams:
                    self._close()
            elif kind == f.PUSH_PROMISE:
                raise f.H2ConnectionError(f.PROTOCOL_ERROR, "a client cannot push")
            # other frame types are ignored (RFC 9113 5.5)
            if self._closed:
                break
        return pos

    def _on_settings(self, payload: bytes | bytearray, flags: int, stream_id: int) -> None:
        if stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & f.ACK:
            if payload:
                raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes")
        for key, value in f.parse_settings(bytes(payload)):
            if key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise f.H2ConnectionError(f.FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self._peer_initial
                self._peer_initial = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > f.MAX_WINDOW:
                        raise f.H2ConnectionError(f.FLOW_CONTROL_ERROR, "stream window overflow")
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= f.MAX_FRAME_LIMIT:
                    raise f.H2ConnectionError(f.PROTOCOL_ERROR, f"invalid MAX_FRAME_SIZE {value}")
                self._peer_max_frame = value
            elif key == f.ENABLE_PUSH and value > 1:
                raise f.H2ConnectionError(f.PROTOCOL_ERROR, "invalid ENABLE_PUSH")
            elif key == f.HEADER_TABLE_SIZE:
                self._encoder.table_size(value)
            # MAX_CONCURRENT_STREAMS is about pushes, which never happen.
        self._emit(f.SETTINGS_ACK)
        if self._blocked:
            self._pump_blocked()

    def _on_window_update(self, payload: bytes | bytearray, stream_id: int) -> None:
        if len(payload) != 4:
            raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "WINDOW_UPDATE of other than 4 bytes")
        increment = f.u32(payload)
        if not stream_id:
            if not increment:
                raise f.H2ConnectionError(f.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > f.MAX_WINDOW:
                raise f.H2ConnectionError(f.FLOW_CONTROL_ERROR, "connection window overflow")
            if self._blocked:
                self._pump_blocked()
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_id:
                raise f.H2ConnectionError(f.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return  # a closed stream: ignored
        if not increment:
            self._abandon(stream, f.PROTOCOL_ERROR)
            return
        stream.send_window += increment
        if stream.send_window > f.MAX_WINDOW:
            self._abandon(stream, f.FLOW_CONTROL_ERROR)
            return
        if stream.id in self._blocked:
            self._pump(stream)

    def _on_rst_stream(self, payload: bytes | bytearray, stream_id: int) -> None:
        if len(payload) != 4:
            raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "RST_STREAM of other than 4 bytes")
        if not stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        if stream_id > self._last_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
        stream = self._streams.get(stream_id)
        if stream is not None:  # the client cancelled the call
            self._drop(stream)
        self._count_reset()

    def _on_headers(
        self, data: bytes | bytearray, start: int, end: int, flags: int, stream_id: int
    ) -> None:
        if not stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & f.PADDED:
            start, end = f.unpad(data, start, end)
        if flags & f.PRIORITY_FLAG:
            if end - start < 5:
                raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "HEADERS too short for priority")
            start += 5
        block = bytes(data[start:end])
        if not flags & f.END_HEADERS:
            self._continuation = (stream_id, flags, [block], len(block))
            return
        self._on_header_block(stream_id, flags, block)

    def _on_continuation(
        self, data: bytes | bytearray, start: int, end: int, flags: int, stream_id: int
    ) -> None:
        pending = self._continuation
        if pending is None or pending[0] != stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "CONTINUATION out of place")
        first_id, first_flags, parts, size = pending
        parts.append(bytes(data[start:end]))
        size += end - start
        if size > MAX_HEADER_BLOCK:
            raise f.H2ConnectionError(f.ENHANCE_YOUR_CALM, "header block too large")
        if flags & f.END_HEADERS:
            self._continuation = None
            self._on_header_block(first_id, first_flags, b"".join(parts))
        else:
            self._continuation = (first_id, first_flags, parts, size)

    def _on_header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        head = self._decoder.decode(block)  # always decoded: it updates the HPACK table
        end_stream = bool(flags & f.END_STREAM)
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers from the client end its requests
            if not end_stream:
                self._abandon(stream, f.PROTOCOL_ERROR)
            elif not stream.remote_closed:
                self._end_of_requests(stream)
            return
        if stream_id <= self._last_id:
            if stream_id % 2 == 0:
                raise f.H2ConnectionError(f.PROTOCOL_ERROR, "HEADERS on an even stream")
            return  # a stream already closed (we reset it or answered it): ignored
        if stream_id % 2 == 0:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "client stream ids are odd")
        self._last_id = stream_id  # (a GOAWAY already sent named the last id it took)
        if self._stopping:
            if not self._calmed:  # (after ENHANCE_YOUR_CALM its GOAWAY refuses them all)
                self._emit(f.rst_stream(stream_id, f.REFUSED_STREAM))
                self._count_reset()
            return
        if len(self._streams) >= MAX_STREAMS:
            self._emit(f.rst_stream(stream_id, f.REFUSED_STREAM))
            self._count_reset()
            return
        stream = Stream(stream_id, self._peer_initial)
        self._streams[stream_id] = stream
        self._open(stream, head, end_stream)

    def _on_data(
        self, data: bytes | bytearray, start: int, end: int, flags: int, stream_id: int
    ) -> None:
        if not stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "DATA on stream 0")
        length = end - start
        self._recv_window -= length
        if self._recv_window < 0:
            raise f.H2ConnectionError(f.FLOW_CONTROL_ERROR, "data beyond the connection window")
        if self._recv_window < CONNECTION_WINDOW // 2:
            self._emit(f.window_update(0, CONNECTION_WINDOW - self._recv_window))
            self._recv_window = CONNECTION_WINDOW
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_id:
                raise f.H2ConnectionError(f.PROTOCOL_ERROR, "DATA on an idle stream")
            return  # a stream already closed: counted against the window, then ignored
        if stream.remote_closed:
            self._abandon(stream, f.STREAM_CLOSED)
            return
        stream.recv_window -= length
        if stream.recv_window < 0:
            self._abandon(stream, f.FLOW_CONTROL_ERROR)
            return
        if flags & f.PADDED:
            start, end = f.unpad(data, start, end)
        reader = stream.reader
        if reader is not None and end > start:  # None: the call is answered already
            try:
                messages = reader.feed(data, start, end)
            except MessageError as exc:
                self._finish(stream, exc.code, exc.message)
                return
            for message in messages:
                if not self._on_message(stream, message):
                    return
        if flags & f.END_STREAM:
            self._end_of_requests(stream)
        elif stream.recv_window < STREAM_WINDOW // 2 and stream.id in self._streams:
            self._emit(f.window_update(stream.id, STREAM_WINDOW - stream.recv_window))
            stream.recv_window = STREAM_WINDOW

    # -- closing --------------------------------------------------------------------------

    def _go_away(self, code: int, message: str) -> None:
        # A later GOAWAY may not name a higher stream than an earlier one did (RFC 9113 6.8):
        # streams that arrived in between were ignored.
        last = self._last_id if self._gone_away_at is None else self._gone_away_at
        self._gone_away_at = last
        self._stopping = True
        self._emit(f.goaway(last, code, message.encode("utf-8", "replace")[:256]))

    def _fail(self, code: int, message: str) -> None:
        """A connection error: GOAWAY with ``code``, cancel every call, close."""
        logger.debug("HTTP/2 connection error %d from %s: %s", code, self._peer, message)
        self._go_away(code, message)
        self._hang_up()

    def _hang_up(self) -> None:
        """Cancel every call and close, after the GOAWAY already queued."""
        if self._closed:
            return
        self._closed = True  # input from now on is read and dropped
        self._flush()
        for stream in list(self._streams.values()):
            self._drop(stream)
        transport = self._transport
        if transport.is_closing():
            return
        if transport.can_write_eof():
            # Half-close, and close after a moment: closing with unread input would reset
            # the connection and could destroy the GOAWAY before the peer reads it.
            transport.write_eof()
            if self._linger is not None:
                self._linger.cancel()
            self._linger = self._loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def _close(self) -> None:
        if self._calmed:  # a flooding client's input may still be arriving: linger
            self._hang_up()
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        if not self._transport.is_closing():
            self._transport.close()

    def shutdown(self) -> None:
        """GOAWAY: no new calls; the connection closes once the calls in flight end."""
        if self._closed or self._stopping:
            return
        self._go_away(f.NO_ERROR, "")
        self._flush()
        if not self._streams:
            self._close()

    def ask_to_leave(self) -> None:
        """A graceful GOAWAY that still admits every stream (last id 2^31-1, RFC 9113 6.8):
        clients open a new connection for their next calls while this one's finish."""
        if self._closed or self._stopping:
            return
        self._emit(f.goaway(MAX_STREAM_ID, f.NO_ERROR, b"shutting down"))
        self._flush()

    def abort(self) -> None:
        for stream in list(self._streams.values()):
            self._drop(stream)
        if not self._lost:
            self._transport.abort()

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [s.task for s in self._streams.values() if s.task is not None]
