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

Bounded: a peer that stops reading pauses the connection's output and input (``sending``);
the preface and each header block must arrive within the header-read timeout, and connections
beyond the service's cap are closed on accept (``bounds``).

This module holds the connection's lifecycle: accept, reads, closing. The rest are mixins of
``H2Connection``, one job each, so the per-frame path calls methods of one object with no
extra hop: ``dispatch.Dispatcher`` (the frame loop and its tables) over ``receiving.Receiver``
(HEADERS, CONTINUATION, DATA) and ``control.Control`` (SETTINGS, WINDOW_UPDATE, PING and the
other control frames); ``calls.CallRunner`` (a new call checked, its request messages, the
task that drives the servicer) on top of ``sending.Sender`` (response frames, send-side flow
control, write back-pressure, the batched write) and ``states.StreamStates`` (how closed
streams closed). Per-stream state is ``stream.Stream``; the advertised limits are in
``limits``. ``upkeep.Upkeep`` holds what a timer drives: keepalive pings, policing the
client's pings, the idle close, the header-read timeout, and the reset and SETTINGS budgets
against floods.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.dispatch import PREFACE, Dispatcher
from tidal.frontends.grpc.h2.headers import HeaderDecoder, ResponseEncoder
from tidal.frontends.grpc.h2.limits import (
    CONNECTION_WINDOW,
    LINGER_SECONDS,
    MAX_FRAME_SIZE,
    MAX_STREAMS,
    STREAM_WINDOW,
    WRITE_HIGH_WATER,
    WRITE_LOW_WATER,
)
from tidal.frontends.grpc.h2.stream import Stream
from tidal.frontends.grpc.h2.upkeep import Upkeep

if TYPE_CHECKING:
    from tidal.frontends.grpc.h2.server import TidalGrpcService

MAX_STREAM_ID = 2**31 - 1  # the largest stream id: a GOAWAY naming it refuses none

logger = logging.getLogger(__name__)


class H2Connection(Dispatcher, Upkeep, asyncio.Protocol):
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
        self._handlers = PREFACE  # the frame table (see dispatch)
        self._paused = False  # write back-pressure: the transport's buffer is full
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
        self._states_init()

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        cap = self._service.bounds.max_connections
        if cap and len(self._service.connections) >= cap:  # --grpc-max-connections
            logger.debug("closing a gRPC connection over the cap of %d", cap)
            self._closed = self._lost = True
            transport.close()
            return
        self._transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
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
            used = self._frames(data, 0) if self._preface else self._read_preface(data)
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

    def _read_preface(self, data: bytes | bytearray) -> int:
        """The client's preface, then frames; how much of ``data`` was used (none until the
        whole preface is there)."""
        if len(data) < len(f.PREFACE):
            if not f.PREFACE.startswith(bytes(data)):
                raise f.H2ConnectionError(f.PROTOCOL_ERROR, "not an HTTP/2 preface")
            return 0
        if data[: len(f.PREFACE)] != f.PREFACE:
            raise f.H2ConnectionError(f.PROTOCOL_ERROR, "not an HTTP/2 preface")
        self._preface = True
        return self._frames(data, len(f.PREFACE))

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
