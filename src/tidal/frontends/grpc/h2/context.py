"""The servicer context of one call on tidal's HTTP/2 transport: the part of
``grpc.aio.ServicerContext`` the servicer and its helpers use, so that the same
``InferenceServicer`` methods serve both transports."""

from __future__ import annotations

import time
from typing import NoReturn

import grpc

Metadata = tuple[tuple[str, str | bytes], ...]


def code_number(code: grpc.StatusCode) -> int:
    return code.value[0]


class CallContext:
    """State of one call: its metadata and deadline in, its status and trailers out."""

    __slots__ = ("_cancelled", "_code", "_deadline", "_details", "_metadata", "_peer", "_trailers")

    def __init__(self, metadata: Metadata, deadline: float | None, peer: str) -> None:
        self._metadata = metadata
        self._deadline = deadline  # time.monotonic() value, None without grpc-timeout
        self._peer = peer
        self._code: grpc.StatusCode | None = None
        self._details = ""
        self._trailers: Metadata = ()
        self._cancelled = False

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn:
        """End the call with ``code`` and ``details``: raises ``grpc.aio.AbortError``, which
        the transport turns into the call's status (as grpc.aio does)."""
        if code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a status other than OK")
        self._code = code
        self._details = details
        if trailing_metadata:
            self._trailers = tuple(trailing_metadata)
        raise grpc.aio.AbortError()

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def set_trailing_metadata(self, trailing_metadata: Metadata) -> None:
        self._trailers = tuple(trailing_metadata)

    def trailing_metadata(self) -> Metadata:
        return self._trailers

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def cancelled(self) -> bool:
        """True once the client reset the call, went away, or its deadline passed."""
        return self._cancelled

    def done(self) -> bool:
        return self._cancelled

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), 0.0)

    async def send_initial_metadata(self, initial_metadata: Metadata) -> None:
        """Accepted for compatibility; this transport sends no custom initial metadata."""
