"""Which client stream ids are idle, open or closed, and how a closed one closed (RFC 9113 5.1).

A stream id above the last one opened is idle. Below it, a stream is open (in the connection's
``_streams``) or closed. A closed stream closed in one of three ways, each with its own answer
to a late frame:

- ``RESET_SENT``: we reset it (or refused it); frames the client sent before it saw our
  RST_STREAM are ignored.
- ``RESET_RECEIVED``: the client reset it; a later DATA or HEADERS is a stream error
  STREAM_CLOSED.
- ``ENDED``: both sides ended it; a later DATA or HEADERS is a connection error
  STREAM_CLOSED.
- ``SKIPPED``: the client opened a higher id first, so this one was never used; HEADERS on it
  is a connection error PROTOCOL_ERROR (stream ids only go up).

Only the exceptions are stored: the last ``RESET_MEMORY`` resets and the last ``SKIP_MEMORY``
ranges of skipped ids, so a stream that ended normally costs nothing here.
"""

from __future__ import annotations

from collections import deque

from tidal.frontends.grpc.h2.limits import RESET_MEMORY, SKIP_MEMORY

ENDED = 0
RESET_SENT = 1
RESET_RECEIVED = 2
SKIPPED = 3


class StreamStates:
    """The stream-id bookkeeping of ``H2Connection``; a mixin."""

    _last_id: int

    def _states_init(self) -> None:
        self._resets: dict[int, int] = {}
        self._reset_order: deque[int] = deque()
        self._skips: deque[tuple[int, int]] = deque()  # (first, last) ids never opened

    def _advance(self, stream_id: int) -> None:
        """A new stream id above the last: the odd ids in between were skipped."""
        if stream_id != self._last_id + 2 and stream_id > self._last_id:
            skips = self._skips
            skips.append((self._last_id + 1, stream_id - 1))
            if len(skips) > SKIP_MEMORY:
                skips.popleft()
        self._last_id = max(self._last_id, stream_id)

    def _remember_reset(self, stream_id: int, how: int) -> None:
        resets = self._resets
        if stream_id not in resets:
            order = self._reset_order
            order.append(stream_id)
            if len(order) > RESET_MEMORY:
                resets.pop(order.popleft(), None)
        resets[stream_id] = how

    def _closed_state(self, stream_id: int) -> int:
        """How the closed stream ``stream_id`` (at or below the last id, not open) closed."""
        how = self._resets.get(stream_id)
        if how is not None:
            return how
        for first, last in self._skips:
            if first <= stream_id <= last:
                return SKIPPED
        return ENDED
