"""The frames that carry requests (RFC 9113 sections 6.1, 6.2, 6.10 and 8): HEADERS and
CONTINUATION into header blocks, a block into a new call or its trailers, DATA into its
request messages, with the receive windows replenished as data arrives.

A header block is always decoded (it updates the HPACK table), then checked: a malformed
request (RFC 9113 8.2, 8.3) is a stream error PROTOCOL_ERROR, a well-formed one that is not
a POST is answered 405, a POST becomes a call (``calls.CallRunner._open``). Frames on streams
that are closed are answered by how the stream closed (``states``).
"""

from __future__ import annotations

from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.calls import CallRunner
from tidal.frontends.grpc.h2.headers import HeaderDecoder, RequestHead
from tidal.frontends.grpc.h2.limits import (
    CONNECTION_WINDOW,
    MAX_HEADER_BLOCK,
    MAX_STREAMS,
    STREAM_WINDOW,
)
from tidal.frontends.grpc.h2.messages import MessageError, MessageReader
from tidal.frontends.grpc.h2.states import ENDED, RESET_SENT, SKIPPED
from tidal.frontends.grpc.h2.stream import Stream

Data = bytes | bytearray

# Carried in a header block's flags (above the 8 frame-flag bits) through its CONTINUATION
# frames: the HEADERS frame's priority named the stream itself (RFC 9113 5.3.1).
SELF_DEPENDENT = 0x100


class Receiver(CallRunner):
    """The request-frame handlers of ``H2Connection``; a mixin, whose state the connection's
    ``__init__`` sets."""

    _decoder: HeaderDecoder
    _last_id: int
    _recv_window: int
    _peer_initial: int
    _calmed: bool
    _continuation: tuple[int, int, list[bytes], int] | None
    _head_started: int  # the upkeep tick at which the open header block began
    _ticks: int

    # -- HEADERS and CONTINUATION ---------------------------------------------------------

    def _on_headers(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        if not stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "HEADERS on stream 0")
        if flags & f.PADDED:
            start, end = f.unpad(data, start, end)
        if flags & f.PRIORITY_FLAG:
            if end - start < 5:
                raise f.H2ConnectionError(f.FRAME_SIZE_ERROR, "HEADERS too short for priority")
            if f.u32(data, start) == stream_id:
                flags |= SELF_DEPENDENT
            start += 5
        block = bytes(data[start:end])
        if not flags & f.END_HEADERS:
            self._continuation = (stream_id, flags, [block], len(block))
            self._head_started = self._ticks  # the header-read timeout runs (upkeep)
            self._expect_continuation()
            return
        self._on_header_block(stream_id, flags, block)

    def _on_continuation(
        self, data: Data, start: int, end: int, flags: int, stream_id: int
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
            self._expect_any()
            self._on_header_block(first_id, first_flags, b"".join(parts))
        else:
            self._continuation = (first_id, first_flags, parts, size)

    def _on_header_block(self, stream_id: int, flags: int, block: bytes) -> None:
        head = self._decoder.decode(block)  # always decoded: it updates the HPACK table
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._on_trailers(stream, head, flags)
        elif stream_id <= self._last_id:
            self._headers_on_closed(stream_id)
        elif stream_id % 2 == 0:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "client stream ids are odd")
        else:
            self._advance(stream_id)  # (a GOAWAY already sent named the last id it took)
            self._new_stream(stream_id, flags, head)

    def _new_stream(self, stream_id: int, flags: int, head: RequestHead) -> None:
        end_stream = bool(flags & f.END_STREAM)
        if head.problem or flags & SELF_DEPENDENT or (end_stream and head.content_length > 0):
            self._reset(stream_id, f.PROTOCOL_ERROR)  # malformed (RFC 9113 8.1.1)
            return
        if self._stopping:
            if not self._calmed:  # (after ENHANCE_YOUR_CALM its GOAWAY refuses them all)
                self._reset(stream_id, f.REFUSED_STREAM)
            else:
                self._remember_reset(stream_id, RESET_SENT)
            return
        if len(self._streams) >= MAX_STREAMS:
            self._reset(stream_id, f.REFUSED_STREAM)
            return
        stream = Stream(stream_id, self._peer_initial)
        self._streams[stream_id] = stream
        if head.method != b"POST":  # well formed, but not a gRPC call
            stream.remote_closed = end_stream
            self._respond_http(stream, 405)
            return
        stream.content_length = head.content_length
        self._open(stream, head, end_stream)

    def _on_trailers(self, stream: Stream, head: RequestHead, flags: int) -> None:
        """A second header block on an open stream: the client's trailers end its requests."""
        if stream.remote_closed:  # half-closed (remote): RFC 9113 5.1
            self._abandon(stream, f.STREAM_CLOSED)
        elif not flags & f.END_STREAM or head.trailer_problem or flags & SELF_DEPENDENT:
            self._abandon(stream, f.PROTOCOL_ERROR)
        else:
            self._requests_end(stream)

    def _headers_on_closed(self, stream_id: int) -> None:
        how = self._closed_state(stream_id)
        if how == SKIPPED or stream_id % 2 == 0:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "HEADERS on a stream id already passed")
        self._on_closed(stream_id, how)

    def _on_closed(self, stream_id: int, how: int) -> None:
        """DATA or HEADERS on a closed stream (RFC 9113 5.1): ignored after our reset, a
        stream error after the client's, a connection error after both ended it."""
        if how == ENDED:
            raise f.H2ConnectionError(f.STREAM_CLOSED, f"a frame on closed stream {stream_id}")
        if how != RESET_SENT:
            self._reset(stream_id, f.STREAM_CLOSED)

    # -- DATA -----------------------------------------------------------------------------

    def _on_data(self, data: Data, start: int, end: int, flags: int, stream_id: int) -> None:
        if not stream_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "DATA on stream 0")
        window = self._recv_window - (end - start)  # the whole frame counts, padding too
        if window < 0:
            raise f.H2ConnectionError(f.FLOW_CONTROL_ERROR, "data beyond the connection window")
        if window < CONNECTION_WINDOW // 2:
            self._emit(f.window_update(0, CONNECTION_WINDOW - window))
            window = CONNECTION_WINDOW
        self._recv_window = window
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._stream_data(stream, data, start, end, flags)
        elif stream_id > self._last_id:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "DATA on an idle stream")
        else:
            self._on_closed(stream_id, self._closed_state(stream_id))

    def _stream_data(self, stream: Stream, data: Data, start: int, end: int, flags: int) -> None:
        if stream.remote_closed:
            self._abandon(stream, f.STREAM_CLOSED)
            return
        stream.recv_window -= end - start
        if stream.recv_window < 0:
            self._abandon(stream, f.FLOW_CONTROL_ERROR)
            return
        if flags & f.PADDED:
            start, end = f.unpad(data, start, end)
        if end > start and not self._take_body(stream, data, start, end):
            return
        if flags & f.END_STREAM:
            self._requests_end(stream)
        elif stream.recv_window < STREAM_WINDOW // 2 and stream.id in self._streams:
            self._emit(f.window_update(stream.id, STREAM_WINDOW - stream.recv_window))
            stream.recv_window = STREAM_WINDOW

    def _take_body(self, stream: Stream, data: Data, start: int, end: int) -> bool:
        """Request bytes ``data[start:end]`` into messages; False when that ended the call."""
        if stream.content_length >= 0:
            stream.received += end - start
            if stream.received > stream.content_length:  # RFC 9113 8.1.1
                self._abandon(stream, f.PROTOCOL_ERROR)
                return False
        reader: MessageReader | None = stream.reader
        if reader is None:  # the call is answered already
            return True
        try:
            messages = reader.feed(data, start, end)
        except MessageError as exc:
            self._finish(stream, exc.code, exc.message)
            return False
        return all(self._on_message(stream, message) for message in messages)

    def _requests_end(self, stream: Stream) -> None:
        """END_STREAM from the client: its content-length must have been met."""
        if 0 <= stream.content_length != stream.received:
            self._abandon(stream, f.PROTOCOL_ERROR)
        else:
            self._end_of_requests(stream)

    # the frame table of the connection is switched while a header block is open (dispatch)

    def _expect_continuation(self) -> None:
        raise NotImplementedError

    def _expect_any(self) -> None:
        raise NotImplementedError
