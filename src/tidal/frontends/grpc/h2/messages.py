"""gRPC message framing on HTTP/2 DATA: a 1-byte compressed flag and a 4-byte big-endian
length before each message. A DATA frame may hold several messages, and a message may span
many frames; ``MessageReader`` turns the frames of one stream back into messages."""

from __future__ import annotations

import zlib

# gRPC status codes used here (numbers, as on the wire)
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14
UNAUTHENTICATED = 16

ENCODINGS = ("identity", "gzip", "deflate")


class MessageError(Exception):
    """A stream's messages cannot be read: end the call with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def frame(payload: bytes) -> bytes:
    """One uncompressed message with its 5-byte prefix."""
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def prefix(size: int) -> bytes:
    return b"\x00" + size.to_bytes(4, "big")


class MessageReader:
    """Reassembles the messages of one stream from its DATA payloads.

    ``feed(data, start, end)`` takes ``data[start:end]`` (no copy is made to get there) and
    returns the messages completed by it, decompressed. ``MessageError`` when a message is
    over ``limit`` bytes, compressed without an encoding, or does not decompress.
    """

    __slots__ = ("_flag", "_have", "_head", "_need", "_parts", "encoding", "limit")

    def __init__(self, limit: int, encoding: str = "identity") -> None:
        self.limit = limit
        self.encoding = encoding
        self._head = bytearray()  # a message prefix split across frames
        self._need = -1  # the length of the message being collected; -1 between messages
        self._flag = 0
        self._parts: list[bytes] = []
        self._have = 0

    @property
    def partial(self) -> bool:
        """Whether part of a message is buffered (at end of stream: a truncated message)."""
        return self._need >= 0 or bool(self._head)

    def feed(self, data: bytes | bytearray, start: int = 0, end: int | None = None) -> list[bytes]:
        if end is None:
            end = len(data)
        messages: list[bytes] = []
        pos = start
        while pos < end:
            if self._need < 0:
                head = self._head
                if not head and end - pos >= 5:
                    flag = data[pos]
                    size = int.from_bytes(data[pos + 1 : pos + 5], "big")
                    pos += 5
                else:
                    take = min(5 - len(head), end - pos)
                    head += data[pos : pos + take]
                    pos += take
                    if len(head) < 5:
                        break
                    flag = head[0]
                    size = int.from_bytes(head[1:5], "big")
                    head.clear()
                if flag > 1:
                    raise MessageError(INTERNAL, f"invalid message flag {flag}")
                if size > self.limit:
                    raise MessageError(
                        RESOURCE_EXHAUSTED,
                        f"received message larger than max ({size} vs. {self.limit})",
                    )
                if end - pos >= size:  # the whole message is here: one copy
                    payload = bytes(data[pos : pos + size])
                    pos += size
                    messages.append(self._finish(flag, payload) if flag else payload)
                    continue
                self._flag = flag
                self._need = size
            take = min(self._need - self._have, end - pos)
            self._parts.append(bytes(data[pos : pos + take]))
            self._have += take
            pos += take
            if self._have == self._need:
                payload = b"".join(self._parts)
                self._parts = []
                self._have = 0
                self._need = -1
                messages.append(self._finish(self._flag, payload) if self._flag else payload)
        return messages

    def _finish(self, flag: int, payload: bytes) -> bytes:
        """Decompress a message sent with the compressed flag."""
        encoding = self.encoding
        if encoding == "identity":
            raise MessageError(INTERNAL, "compressed message without a grpc-encoding")
        wbits = 31 if encoding == "gzip" else 15
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(payload, self.limit + 1)
        except zlib.error as exc:
            raise MessageError(INTERNAL, f"cannot decompress a {encoding} message: {exc}") from None
        if len(out) > self.limit or inflater.unconsumed_tail:
            raise MessageError(
                RESOURCE_EXHAUSTED, f"decompressed message larger than max ({self.limit})"
            )
        if not inflater.eof:
            raise MessageError(INTERNAL, f"truncated {encoding} message")
        return out
