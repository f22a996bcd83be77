"""The bounds of a gRPC service's connections: how long a client may take to send its preface
and each header block, and how many connections may be open at once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """``--grpc-header-timeout-secs`` and ``--grpc-max-connections`` (0: no limit).

    On tidal's transport, the HTTP/2 preface and the client's first SETTINGS must arrive within
    ``header_timeout_secs`` of the connection opening, and each header block (HEADERS and its
    CONTINUATION frames) within that of its first frame; a slower connection gets GOAWAY and
    is closed. A connection beyond ``max_connections`` is closed as it is accepted.
    """

    header_timeout_secs: float = 15.0
    max_connections: int = 2048

    def channel_options(self) -> list[tuple[str, int]]:
        """The grpc-core channel arguments closest to these (for the ``grpc.aio`` server): its
        handshake timeout covers the preface and the first SETTINGS, not later header blocks."""
        options = []
        if self.header_timeout_secs > 0:
            timeout_ms = max(1, round(self.header_timeout_secs * 1000))
            options.append(("grpc.server_handshake_timeout_ms", timeout_ms))
        if self.max_connections > 0:
            options.append(("grpc.max_allowed_incoming_connections", self.max_connections))
        return options
