"""A hostile HTTP/2 client for the conformance tests: raw frames over a blocking socket.

Frames the server sends are parsed with ``hyperframe``; header blocks go through ``hpack``
both ways. Frames the client sends are built byte by byte (``frame``), so a test can send what
no well-behaved library would: wrong lengths, stream 0, reserved bits, bad padding.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable, Sequence

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
LIVE = "/inference.GRPCInferenceService/ServerLive"
EMPTY_MESSAGE = b"\x00\x00\x00\x00\x00"  # a gRPC message holding an empty protobuf

# frame types and flags
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20

# settings
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6

# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xB

NAMES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
}


class Closed(AssertionError):
    """The server closed the connection where a frame was expected."""


def frame(
    kind: int, flags: int, sid: int, payload: bytes = b"", length: int | None = None
) -> bytes:
    """One frame, byte for byte; ``length`` overrides the header's length field."""
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + struct.pack(">BBI", kind, flags, sid) + payload


def settings(values: dict[int, int] | None = None, *, ack: bool = False, sid: int = 0) -> bytes:
    payload = b"".join(struct.pack(">HI", k, v) for k, v in (values or {}).items())
    return frame(SETTINGS, ACK if ack else 0, sid, payload)


def window_update(sid: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", increment))


def rst_stream(sid: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def priority(sid: int, depends_on: int = 0, weight: int = 15, exclusive: bool = False) -> bytes:
    dep = depends_on | (0x80000000 if exclusive else 0)
    return frame(PRIORITY, 0, sid, struct.pack(">IB", dep, weight))


def ping(payload: bytes = b"12345678", *, ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, payload)


def goaway(last: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


def data(sid: int, payload: bytes, *, end_stream: bool = False, pad: int | None = None) -> bytes:
    flags = END_STREAM if end_stream else 0
    if pad is not None:
        return frame(DATA, flags | PADDED, sid, bytes((pad,)) + payload + b"\x00" * pad)
    return frame(DATA, flags, sid, payload)


def request_fields(path: str = LIVE, method: str = "POST") -> list[tuple[str, str]]:
    return [
        (":method", method),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]


class H2Raw:
    """One raw connection to the server (see the module docstring)."""

    def __init__(self, port: int, timeout: float = 3.0, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # a small receive buffer: a peer that reads slowly, or never
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.server_settings: dict[int, int] = {}
        self._buf = b""
        self._pings = 0

    # -- sending ------------------------------------------------------------------------

    def send(self, *chunks: bytes) -> None:
        self.sock.sendall(b"".join(chunks))

    def handshake(self, values: dict[int, int] | None = None) -> H2Raw:
        """Preface and SETTINGS; returns once the server's SETTINGS came and ours was ACKed."""
        self.send(PREFACE, settings(values))
        got_settings = got_ack = False
        while not (got_settings and got_ack):
            got = self.read()
            if isinstance(got, SettingsFrame):
                if "ACK" in got.flags:
                    got_ack = True
                else:
                    got_settings = True
                    self.server_settings.update(got.settings)
                    self.send(settings(ack=True))
        return self

    def block(self, fields: Iterable[tuple[str, str]] | None = None) -> bytes:
        """An HPACK-encoded header block (a gRPC ServerLive request by default)."""
        return self.encoder.encode(list(request_fields() if fields is None else fields))

    def headers(
        self,
        sid: int,
        fields: Sequence[tuple[str, str]] | None = None,
        *,
        end_stream: bool = False,
        end_headers: bool = True,
        block: bytes | None = None,
        pad: int | None = None,
        depends_on: int | None = None,
    ) -> bytes:
        """A HEADERS frame (not sent)."""
        payload = self.block(fields) if block is None else block
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        if depends_on is not None:
            flags |= PRIORITY_FLAG
            payload = struct.pack(">IB", depends_on, 15) + payload
        if pad is not None:
            flags |= PADDED
            payload = bytes((pad,)) + payload + b"\x00" * pad
        return frame(HEADERS, flags, sid, payload)

    def call(self, sid: int, fields: Sequence[tuple[str, str]] | None = None) -> bytes:
        """A whole unary call: HEADERS, then one empty message ending the stream."""
        return self.headers(sid, fields) + data(sid, EMPTY_MESSAGE, end_stream=True)

    # -- receiving ----------------------------------------------------------------------

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame from the server in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed("the server closed the connection")
            self._buf += chunk

    def read(self, timeout: float | None = None) -> Frame:
        """The server's next frame (header blocks decoded into ``.fields``)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._fill(9, deadline)
        got, length = Frame.parse_frame_header(memoryview(self._buf[:9]))
        self._fill(9 + length, deadline)
        got.parse_body(memoryview(self._buf[9 : 9 + length]))
        self._buf = self._buf[9 + length :]
        if isinstance(got, (HeadersFrame, ContinuationFrame)):
            got.fields = self.decoder.decode(got.data) if "END_HEADERS" in got.flags else []
        return got

    def expect_goaway(self, code: int) -> GoAwayFrame:
        """Frames until a GOAWAY, which must carry ``code``."""
        while True:
            try:
                got = self.read()
            except Closed:
                raise AssertionError(f"closed without GOAWAY (expected {NAMES[code]})") from None
            if isinstance(got, GoAwayFrame):
                assert got.error_code == code, (
                    f"GOAWAY {NAMES.get(got.error_code, got.error_code)} "
                    f"({got.additional_data!r}), expected {NAMES[code]}"
                )
                return got

    def expect_rst(self, sid: int, code: int) -> None:
        """Frames until RST_STREAM on ``sid``, which must carry ``code``."""
        while True:
            got = self.read()
            if isinstance(got, GoAwayFrame):
                raise AssertionError(
                    f"GOAWAY {NAMES.get(got.error_code)} ({got.additional_data!r}), expected"
                    f" RST_STREAM {NAMES[code]} on stream {sid}"
                )
            if isinstance(got, RstStreamFrame) and got.stream_id == sid:
                assert got.error_code == code, (
                    f"RST_STREAM {NAMES.get(got.error_code, got.error_code)},"
                    f" expected {NAMES[code]}"
                )
                return
            if isinstance(got, HeadersFrame) and got.stream_id == sid and "END_STREAM" in got.flags:
                raise AssertionError(f"stream {sid} answered, expected RST_STREAM {NAMES[code]}")

    def expect_error(self, sid: int, code: int, *, answer_allowed: bool = False) -> None:
        """A stream error or a connection error, either with ``code`` (the RFC allows both);
        with ``answer_allowed``, after stream ``sid``'s answer too (as h2spec reads it)."""
        while True:
            got = self.read()
            if isinstance(got, GoAwayFrame):
                assert got.error_code == code, f"GOAWAY {NAMES.get(got.error_code)}"
                return
            if isinstance(got, RstStreamFrame) and got.stream_id == sid:
                assert got.error_code == code, f"RST_STREAM {NAMES.get(got.error_code)}"
                return
            answered = isinstance(got, HeadersFrame) and "END_STREAM" in got.flags
            if answered and got.stream_id == sid and not answer_allowed:
                raise AssertionError(f"stream {sid} answered, expected {NAMES[code]}")

    def response(self, sid: int) -> tuple[list, bytes, list]:
        """(headers, DATA bytes, trailers) of stream ``sid``, which must not be reset."""
        head: list = []
        body = b""
        while True:
            got = self.read()
            if isinstance(got, GoAwayFrame):
                raise AssertionError(f"GOAWAY {NAMES.get(got.error_code)} {got.additional_data!r}")
            if isinstance(got, RstStreamFrame) and got.stream_id == sid:
                raise AssertionError(f"stream {sid} reset: {NAMES.get(got.error_code)}")
            if got.stream_id != sid:
                continue
            if isinstance(got, HeadersFrame):
                if "END_STREAM" in got.flags:
                    return head, body, got.fields
                head = got.fields
            elif isinstance(got, DataFrame):
                body += got.data

    def expect_alive(self) -> list[Frame]:
        """A PING answered: the connection still works. Returns the frames read before."""
        self._pings += 1
        payload = b"alive%03d" % self._pings
        self.send(ping(payload))
        seen = []
        while True:
            got = self.read()
            if isinstance(got, GoAwayFrame):
                raise AssertionError(f"GOAWAY {NAMES.get(got.error_code)} {got.additional_data!r}")
            if isinstance(got, PingFrame) and "ACK" in got.flags and got.opaque_data == payload:
                return seen
            seen.append(got)

    def expect_closed(self, timeout: float = 3.0) -> None:
        """Frames may still come, then the connection must close."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.read(max(0.01, deadline - time.monotonic()))
            except Closed:
                return

    def close(self) -> None:
        self.sock.close()
