"""The timed upkeep of tidal's HTTP/2 connections: keepalive pings, policing the client's pings,
closing idle connections, and the stream-reset budget that stops a rapid-reset flood.

Semantics follow grpc-core's server (what Triton runs), with the knobs Triton exposes:

- keepalive: after ``time_ms`` with nothing read, while a call is open (or always, with
  ``permit_without_calls``), the server sends a PING; no ACK within ``timeout_ms`` closes the
  connection. After ``max_pings_without_data`` pings with no headers or data sent in between,
  further pings are spaced at least a minute apart (0: no such limit).
- ping policing: a client PING within ``min_recv_ping_interval_without_data_ms`` of the one
  before, while the server sends no headers or data, is a strike (with no call open and pings
  not permitted without calls, any two within two hours are); more than ``max_ping_strikes``
  strikes earn GOAWAY ENHANCE_YOUR_CALM "too_many_pings" (0: no limit).
- idle: ``max_connection_idle_ms`` (0: off) after its last call ended (or since it opened),
  a connection with no call open gets GOAWAY NO_ERROR "max_idle" and is closed. Pings do not
  count as use, as in grpc-core.
- reset flood (CVE-2023-44487): see ``limits.RESET_BURST``; SETTINGS flood (CVE-2019-9515):
  ``limits.SETTINGS_BURST``.
- header-read timeout (``bounds.Bounds``): a connection still waiting for the client's
  preface and first SETTINGS, or inside a header block, longer than the timeout gets GOAWAY
  ENHANCE_YOUR_CALM and is closed.

Nothing here runs per frame. One timer per service ticks every connection a few times per
interval (once a second with the defaults); the hot path only stores ``_quiet = 0`` per read
and bumps ``_sends`` per response. Time is read only on a tick and on a client PING.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.bounds import Bounds
from tidal.frontends.grpc.h2.limits import (
    CALM_GRACE_SECONDS,
    IDLE_PING_INTERVAL_SECONDS,
    MIN_TICK_SECONDS,
    RESET_BURST,
    RESET_RATE,
    SETTINGS_BURST,
    SETTINGS_RATE,
    THROTTLED_PING_SECONDS,
)
from tidal.frontends.grpc.h2.stream import Stream

if TYPE_CHECKING:
    from tidal.frontends.grpc.h2.server import TidalGrpcService

logger = logging.getLogger("tidal.frontends.grpc.h2.connection")


@dataclass(frozen=True)
class Keepalive:
    """Keepalive, ping policing and idle settings; durations in milliseconds, defaults and
    meanings as Triton's ``--grpc-keepalive-*`` and ``--grpc-http2-*`` flags."""

    time_ms: int = 7_200_000
    timeout_ms: int = 20_000
    permit_without_calls: bool = False
    max_pings_without_data: int = 2
    min_recv_ping_interval_without_data_ms: int = 300_000
    max_ping_strikes: int = 2
    max_connection_idle_ms: int = 0

    def channel_options(self) -> list[tuple[str, int]]:
        """The same settings as grpc-core channel arguments (for the ``grpc.aio`` server)."""
        options = [
            ("grpc.keepalive_time_ms", self.time_ms),
            ("grpc.keepalive_timeout_ms", self.timeout_ms),
            ("grpc.keepalive_permit_without_calls", int(self.permit_without_calls)),
            ("grpc.http2.max_pings_without_data", self.max_pings_without_data),
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                self.min_recv_ping_interval_without_data_ms,
            ),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
        ]
        if self.max_connection_idle_ms:
            options.append(("grpc.max_connection_idle_ms", self.max_connection_idle_ms))
        return options


class Ticks:
    """A service's upkeep timer: its period, and each time limit counted in its ticks."""

    __slots__ = (
        "header",
        "idle",
        "keepalive",
        "max_ping_strikes",
        "max_pings_without_data",
        "min_ping_interval",
        "permit_without_calls",
        "refill",
        "seconds",
        "settings_refill",
        "timeout",
    )

    def __init__(self, settings: Keepalive, bounds: Bounds | None = None) -> None:
        bounds = bounds or Bounds()
        header_ms = round(bounds.header_timeout_secs * 1000)
        spans = [settings.time_ms, settings.timeout_ms]
        if header_ms > 0:
            spans.append(header_ms)
        if settings.max_connection_idle_ms:
            spans.append(settings.max_connection_idle_ms)
        # a quarter of the shortest span: a limit is met at most a quarter late
        self.seconds = max(MIN_TICK_SECONDS, min(1.0, min(spans) / 4000))
        self.header = self._count(header_ms) if header_ms > 0 else 0
        self.keepalive = self._count(settings.time_ms)
        self.timeout = self._count(settings.timeout_ms)
        idle_ms = settings.max_connection_idle_ms
        self.idle = self._count(idle_ms) if idle_ms else 0
        self.permit_without_calls = settings.permit_without_calls
        self.max_pings_without_data = settings.max_pings_without_data
        self.min_ping_interval = settings.min_recv_ping_interval_without_data_ms / 1000
        self.max_ping_strikes = settings.max_ping_strikes
        self.refill = RESET_RATE * self.seconds  # reset credits earned per tick
        self.settings_refill = SETTINGS_RATE * self.seconds

    def _count(self, ms: int) -> int:
        return max(1, math.ceil(ms / 1000 / self.seconds - 1e-9))


class Upkeep:
    """The timed side of ``H2Connection``; a mixin, whose other state the connection sets."""

    _service: TidalGrpcService
    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport
    _streams: dict[int, Stream]
    _last_id: int
    _closed: bool
    _peer: str
    _linger: asyncio.TimerHandle | None
    _settings_seen: bool
    _continuation: object

    def _upkeep_init(self) -> None:
        self._quiet = 0  # ticks since the last read (data_received zeroes it)
        self._sends = 0  # responses that sent headers or data (the send side bumps it)
        self._ping_out: bytes | None = None  # our keepalive ping waiting for its ACK
        self._ping_wait = 0  # ticks it has waited
        self._ping_seq = 0
        self._ping_at = -math.inf  # when our last keepalive ping left
        self._pings_without_data = 0
        self._sends_at_ping = 0
        self._strikes = 0
        self._last_ping_in = -math.inf
        self._sends_at_ping_in = 0
        self._idle = 0  # ticks with no call open and none started
        self._idle_mark = 0  # _last_id at the previous tick
        self._reset_credit = float(RESET_BURST)
        self._calmed = False
        self._settings_credit = float(SETTINGS_BURST)
        self._ticks = 0  # ticks since the connection opened
        self._head_started = 0  # the tick the open header block began (0: the preface's)

    # -- the tick -------------------------------------------------------------------------

    def _tick(self, ticks: Ticks) -> None:
        """One tick of the service timer: refill the budgets, header-read timeout, keepalive,
        idle close."""
        if self._closed:
            return
        self._refill(ticks)
        self._ticks += 1
        if ticks.header and self._reading_head(ticks):
            return
        self._quiet += 1
        if self._ping_out is not None:
            self._ping_wait += 1
            if self._ping_wait >= ticks.timeout:
                logger.info("gRPC client %s did not answer a keepalive ping: closing", self._peer)
                self._closed = True  # the peer is unresponsive: no GOAWAY, no lingering
                self.abort()
                return
        elif self._quiet >= ticks.keepalive and (self._streams or ticks.permit_without_calls):
            self._keepalive_ping(ticks)
        if ticks.idle:
            self._idle_tick(ticks)

    def _refill(self, ticks: Ticks) -> None:
        if self._reset_credit < RESET_BURST:
            self._reset_credit = min(float(RESET_BURST), self._reset_credit + ticks.refill)
        if self._settings_credit < SETTINGS_BURST:
            self._settings_credit = min(
                float(SETTINGS_BURST), self._settings_credit + ticks.settings_refill
            )

    def _idle_tick(self, ticks: Ticks) -> None:
        if self._streams or self._last_id != self._idle_mark:
            self._idle_mark = self._last_id
            self._idle = 0
            return
        self._idle += 1
        if self._idle >= ticks.idle:
            logger.debug("closing the idle gRPC connection from %s", self._peer)
            self._go_away(f.NO_ERROR, "max_idle")
            self._close()

    def _reading_head(self, ticks: Ticks) -> bool:
        """The header-read timeout: True when it closed the connection."""
        if self._settings_seen and self._continuation is None:
            return False
        if self._ticks - self._head_started <= ticks.header:
            return False
        logger.info("gRPC client %s too slow to send its headers: closing", self._peer)
        self._fail(f.ENHANCE_YOUR_CALM, "header timeout")
        return True

    def _keepalive_ping(self, ticks: Ticks) -> None:
        now = self._loop.time()
        if self._sends != self._sends_at_ping:  # headers or data went out since the last ping
            self._sends_at_ping = self._sends
            self._pings_without_data = 0
        limit = ticks.max_pings_without_data
        if (
            limit
            and self._pings_without_data >= limit
            and now - self._ping_at < THROTTLED_PING_SECONDS
        ):
            return
        self._pings_without_data += 1
        self._ping_seq += 1
        payload = self._ping_seq.to_bytes(8, "big")
        self._ping_out = payload
        self._ping_wait = 0
        self._ping_at = now
        self._emit(f.ping(payload))
        self._flush()

    # -- pings in -------------------------------------------------------------------------

    def _on_ping_ack(self, payload: bytes | bytearray) -> None:
        if self._ping_out is not None and payload == self._ping_out:
            self._ping_out = None

    def _on_ping(self) -> None:
        """A client PING (already answered): a strike when too early, grpc-core's rule."""
        ticks = self._service.ticks
        now = self._loop.time()
        if self._sends != self._sends_at_ping_in:  # we sent headers or data since: forgiven
            self._sends_at_ping_in = self._sends
            self._strikes = 0
            self._last_ping_in = -math.inf
        if self._streams or ticks.permit_without_calls:
            interval = ticks.min_ping_interval
        else:
            interval = IDLE_PING_INTERVAL_SECONDS
        early = now < self._last_ping_in + interval
        self._last_ping_in = now
        if early:
            self._strikes += 1
            if ticks.max_ping_strikes and self._strikes > ticks.max_ping_strikes:
                logger.info("gRPC client %s sent too many pings: GOAWAY", self._peer)
                self._fail(f.ENHANCE_YOUR_CALM, "too_many_pings")

    # -- the reset budget -----------------------------------------------------------------

    def _count_reset(self) -> None:
        """A stream the client reset, or that was refused or reset for its error."""
        credit = self._reset_credit - 1.0
        self._reset_credit = credit
        if credit < 0 and not self._calmed:
            self._calm()

    def _calm(self) -> None:
        """GOAWAY ENHANCE_YOUR_CALM: no new streams; calls running may finish for a moment,
        then the connection closes."""
        self._calmed = True
        logger.warning(
            "gRPC client %s reset streams too fast (over %d, then %g a second): GOAWAY",
            self._peer,
            RESET_BURST,
            RESET_RATE,
        )
        self._go_away(f.ENHANCE_YOUR_CALM, "too many stream resets")
        if not self._streams:
            self._hang_up()
            return
        self._flush()
        if self._linger is None:
            self._linger = self._loop.call_later(CALM_GRACE_SECONDS, self._hang_up)

    if TYPE_CHECKING:  # the connection's own (H2Connection and Sender); not run-time stubs,
        # which could shadow the real methods in the connection's MRO

        def _emit(self, data: bytes | memoryview) -> None: ...
        def _flush(self) -> None: ...
        def _go_away(self, code: int, message: str) -> None: ...
        def _fail(self, code: int, message: str) -> None: ...
        def _hang_up(self) -> None: ...
        def _close(self) -> None: ...
        def abort(self) -> None: ...
