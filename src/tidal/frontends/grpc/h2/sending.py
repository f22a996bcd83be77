"""The send side of an HTTP/2 connection: response frames within the peer's windows.

A response's frames (headers, message, trailers) leave in one ``transport.write``; responses
finished in the same loop turn are written together. Responses beyond the peer's windows wait,
per stream, for its WINDOW_UPDATE. Header blocks are encoded only when they go out, in wire
order, because each may add to the HPACK table.

Write back-pressure: when the transport's buffer passes its high-water mark (the peer is not
reading), asyncio calls ``pause_writing``: no more DATA is produced (streams wait as for
window) and input is no longer read, so no new calls start; ``resume_writing`` undoes both.
Output is written as soon as a loop turn's queue reaches the high-water mark, so a peer that
opened huge windows still gets at most about that much before the pause.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.headers import (
    TRAILERS_OK,
    ResponseEncoder,
    http_status,
    trailers,
    trailers_only,
)
from tidal.frontends.grpc.h2.limits import WRITE_HIGH_WATER, WRITE_JOIN_LIMIT
from tidal.frontends.grpc.h2.messages import OK
from tidal.frontends.grpc.h2.states import RESET_SENT, StreamStates
from tidal.frontends.grpc.h2.stream import Stream


class Sender(StreamStates):
    """Response frames, stream endings and the write batching of ``H2Connection``.

    A mixin: the connection's ``__init__`` sets the state below, and ``_close`` is the
    connection's own.
    """

    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport
    _streams: dict[int, Stream]
    _blocked: dict[int, Stream]  # streams with data waiting for window
    _encoder: ResponseEncoder
    _send_window: int
    _peer_max_frame: int
    _out: list[bytes | memoryview]
    _out_size: int
    _flush_handle: asyncio.Handle | None
    _lost: bool
    _closed: bool
    _stopping: bool
    _paused: bool  # the transport's buffer is above its high-water mark
    _buf: bytearray
    _sends: int  # bumped per response that sends headers or data (keepalive reads it)

    # -- frames out -----------------------------------------------------------------------

    def _reply(self, stream: Stream, body: bytes) -> None:
        """A unary call's whole response: headers, one message, trailers; one write when
        the windows allow, else what fits now and the rest on WINDOW_UPDATE."""
        if stream.id not in self._streams:
            return  # reset or lost meanwhile
        size = len(body) + 5
        trailer_block = TRAILERS_OK
        context = stream.context
        if context is not None and context._trailers:
            trailer_block = trailers(OK, "", context._trailers)
        if (
            size <= self._send_window
            and size <= stream.send_window
            and size <= self._peer_max_frame
            and not self._paused
        ):
            self._send_window -= size
            self._sends += 1
            sid = stream.id
            encoder = self._encoder
            head_block = encoder.headers()  # in wire order: each may add to the table
            if trailer_block is TRAILERS_OK:
                trailer_block = encoder.ok_trailers()
            else:
                trailer_block = encoder.literal(trailer_block)
            self._emit(
                b"".join(
                    (
                        f.head(len(head_block), f.HEADERS, f.END_HEADERS, sid),
                        head_block,
                        f.head(size, f.DATA, 0, sid),
                        b"\x00",
                        (size - 5).to_bytes(4, "big"),
                        body,
                        f.head(len(trailer_block), f.HEADERS, f.END_HEADERS | f.END_STREAM, sid),
                        trailer_block,
                    )
                )
            )
            if self._out_size >= WRITE_HIGH_WATER:
                self._flush()  # let the transport see it: it may pause us
            else:
                self._schedule_flush()
            self._close_stream(stream)
            return
        self._send_message(stream, body)
        stream.trailer = trailer_block
        self._pump(stream)

    def _send_message(self, stream: Stream, body: bytes) -> None:
        """One response message (headers first if not sent), within the flow windows."""
        if not stream.headers_sent:
            stream.headers_sent = True
            self._emit(f.headers(stream.id, self._encoder.headers(), False, self._peer_max_frame))
        data = b"\x00" + len(body).to_bytes(4, "big") + body if len(body) < 65536 else None
        if data is not None:
            stream.pending.append(memoryview(data))
        else:
            stream.pending.append(memoryview(b"\x00" + len(body).to_bytes(4, "big")))
            stream.pending.append(memoryview(body))
        self._pump(stream)

    def _pump(self, stream: Stream) -> None:
        """Send what the windows allow of ``stream``'s pending data, then its trailers."""
        pending = stream.pending
        max_frame = self._peer_max_frame
        sid = stream.id
        self._sends += 1
        while pending:
            allowed = min(self._send_window, stream.send_window, max_frame)
            if allowed <= 0 or self._paused:
                self._blocked[sid] = stream
                self._schedule_flush()
                return
            chunk = pending[0]
            if len(chunk) <= allowed:
                pending.popleft()
                # coalesce small chunks (prefix + message) into one frame
                while (
                    pending and len(chunk) + len(pending[0]) <= allowed and len(pending[0]) < 65536
                ):
                    chunk = memoryview(bytes(chunk) + bytes(pending.popleft()))
            else:
                pending[0] = chunk[allowed:]
                chunk = chunk[:allowed]
            n = len(chunk)
            self._send_window -= n
            stream.send_window -= n
            self._emit(f.head(n, f.DATA, 0, sid))
            self._emit(chunk)
            if self._out_size >= WRITE_HIGH_WATER:
                self._flush()  # the transport may pause us (``pause_writing``)
        self._blocked.pop(sid, None)
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
        spec = stream.trailer
        if spec is not None:
            # encoded only now, in wire order, since the block may add to the table
            encoder = self._encoder
            block = encoder.ok_trailers() if spec is TRAILERS_OK else encoder.literal(spec)
            self._emit(f.headers(sid, block, True, self._peer_max_frame))
            stream.trailer = None
            self._close_stream(stream)
        self._schedule_flush()

    def _pump_blocked(self) -> None:
        for stream in list(self._blocked.values()):
            if self._send_window <= 0 or self._paused:
                break
            self._pump(stream)

    async def _drained(self, stream: Stream) -> None:
        waiter = self._loop.create_future()
        stream.drained = waiter
        try:
            await waiter
        finally:
            stream.drained = None

    def _finish(self, stream: Stream, code: int, message: str, metadata: tuple = ()) -> None:
        """End the call with a status: trailers after its data, or a trailers-only response."""
        if stream.id not in self._streams or stream.trailer is not None:
            return
        stream.reader = None  # later request data is dropped
        if stream.headers_sent:
            block = trailers(code, message, metadata)
        else:
            stream.headers_sent = True
            block = trailers_only(code, message, metadata)
        stream.trailer = block
        if code != OK:
            stream.pending.clear()  # an error: unsent response data is moot
        self._pump(stream)

    def _respond_http(self, stream: Stream, status: int) -> None:
        """A plain HTTP answer to a request that is not gRPC (wrong content-type)."""
        stream.headers_sent = True
        stream.reader = None
        stream.trailer = http_status(status)
        self._pump(stream)

    def _close_stream(self, stream: Stream) -> None:
        """We sent END_STREAM: the stream is done, unless the client is still sending."""
        if not stream.remote_closed:
            # Answered before the request ended: ask the client to stop (RFC 9113 8.1).
            self._emit(f.rst_stream(stream.id, f.NO_ERROR))
            self._remember_reset(stream.id, RESET_SENT)
        self._forget_stream(stream)

    def _forget_stream(self, stream: Stream) -> None:
        self._streams.pop(stream.id, None)
        self._blocked.pop(stream.id, None)
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        if stream.drained is not None and not stream.drained.done():
            stream.drained.set_result(None)
        if self._stopping and not self._streams:
            self._close()

    def _abandon(self, stream: Stream, code: int) -> None:
        """A stream error: reset the stream, cancel its call."""
        self._emit(f.rst_stream(stream.id, code))
        self._remember_reset(stream.id, RESET_SENT)
        self._drop(stream)
        self._count_reset()  # the client's error made us reset it: a flood counts the same

    def _drop(self, stream: Stream) -> None:
        """Forget a stream the client reset (or that died with the connection); its task is
        cancelled so that the request leaves its scheduler, as on an HTTP disconnect."""
        if stream.context is not None:
            stream.context._cancelled = True
        task = stream.task
        if task is not None:
            task.cancel()
        if stream.requests is not None:
            stream.requests.close()
        stream.pending.clear()
        stream.trailer = None
        self._forget_stream(stream)

    def _reset(self, stream_id: int, code: int) -> None:
        """A stream error on ``stream_id``, open or not; an idle one is closed by it."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._abandon(stream, code)
        else:
            self._advance(stream_id)
            self._emit(f.rst_stream(stream_id, code))
            self._remember_reset(stream_id, RESET_SENT)
            self._count_reset()

    # -- write back-pressure (asyncio.Protocol) -------------------------------------------

    def pause_writing(self) -> None:
        self._paused = True
        if not self._closed:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._closed:
            return
        self._transport.resume_reading()
        if self._blocked:
            self._pump_blocked()
        if self._buf:  # frames left unread when we paused
            self._loop.call_soon(self._read_buffered)
        self._schedule_flush()

    def _read_buffered(self) -> None:
        if not self._paused and not self._closed:
            self.data_received(b"")

    # -- writing --------------------------------------------------------------------------

    def _emit(self, data: bytes | memoryview) -> None:
        self._out.append(data)
        self._out_size += len(data)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and self._out:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        out = self._out
        if not out or self._lost or self._transport.is_closing():
            out.clear()
            self._out_size = 0
            return
        transport = self._transport
        if len(out) == 1:
            transport.write(out[0])
        elif self._out_size <= WRITE_JOIN_LIMIT:
            transport.write(b"".join(out))
        else:
            transport.writelines(out)
        self._out = []
        self._out_size = 0

    def _close(self) -> None:
        """Flush and close the transport: ``H2Connection._close`` (see ``Sender``)."""
        raise NotImplementedError

    if TYPE_CHECKING:  # ``upkeep.Upkeep._count_reset``, later in the connection's MRO, and
        # the connection's own ``data_received``

        def _count_reset(self) -> None: ...
        def data_received(self, data: bytes) -> None: ...
