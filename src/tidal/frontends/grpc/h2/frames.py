"""HTTP/2 frames (RFC 9113 section 4 and 6): the constants, the 9-byte header, and builders
for every frame the server sends. Builders return ``bytes`` ready for ``transport.write``."""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# settings identifiers
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

# error codes
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_FRAME_LIMIT = 16_777_215
MAX_WINDOW = 2**31 - 1

# length (24 bits, as 16 + 8), type, flags, stream id (the reserved bit is masked by readers)
HEAD = struct.Struct(">HBBBI")
HEAD_SIZE = 9
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")
_GOAWAY = struct.Struct(">II")


class H2ConnectionError(Exception):
    """A connection error (RFC 9113 5.4.1): answer GOAWAY with ``code`` and close."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte frame header."""
    return HEAD.pack(length >> 8, length & 0xFF, kind, flags, stream_id)


def settings(values: dict[int, int]) -> bytes:
    payload = b"".join(_SETTING.pack(key, value) for key, value in values.items())
    return head(len(payload), SETTINGS, 0, 0) + payload


SETTINGS_ACK = head(0, SETTINGS, ACK, 0)


def parse_settings(
    data: bytes | bytearray, start: int = 0, end: int | None = None
) -> list[tuple[int, int]]:
    """The (identifier, value) pairs of the SETTINGS payload ``data[start:end]`` (a multiple
    of 6 bytes)."""
    stop = len(data) if end is None else end
    return [_SETTING.unpack_from(data, at) for at in range(start, stop, 6)]


def ping(payload: bytes) -> bytes:
    return head(8, PING, 0, 0) + payload


def ping_ack(payload: bytes) -> bytes:
    return head(8, PING, ACK, 0) + payload


def window_update(stream_id: int, increment: int) -> bytes:
    return head(4, WINDOW_UPDATE, 0, stream_id) + _U32.pack(increment)


def rst_stream(stream_id: int, code: int) -> bytes:
    return head(4, RST_STREAM, 0, stream_id) + _U32.pack(code)


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return head(8 + len(debug), GOAWAY, 0, 0) + _GOAWAY.pack(last_stream_id, code) + debug


def unpad(data: bytes | bytearray, start: int, end: int) -> tuple[int, int]:
    """The content bounds of a PADDED frame's payload ``data[start:end]`` (RFC 9113 6.1)."""
    if start == end:
        raise H2ConnectionError(PROTOCOL_ERROR, "padded frame without a pad length")
    pad = data[start]
    start += 1
    if pad > end - start:
        raise H2ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
    return start, end - pad


def u32(data: bytes | bytearray, at: int = 0) -> int:
    """The 31-bit value of the 4 bytes at ``at`` (WINDOW_UPDATE, RST_STREAM, a stream
    dependency), reserved bit cleared."""
    return int(_U32.unpack_from(data, at)[0]) & 0x7FFFFFFF


def headers(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """A header block as HEADERS, plus CONTINUATION frames when it exceeds ``max_frame``."""
    flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return head(len(block), HEADERS, flags | END_HEADERS, stream_id) + block
    parts = [head(max_frame, HEADERS, flags, stream_id), block[:max_frame]]
    at = max_frame
    while at < len(block):
        piece = block[at : at + max_frame]
        at += len(piece)
        parts.append(
            head(len(piece), CONTINUATION, END_HEADERS if at >= len(block) else 0, stream_id)
        )
        parts.append(piece)
    return b"".join(parts)
