"""HPACK (RFC 7541) for gRPC: decoding request header blocks into ``RequestHead`` (cached),
and encoding the few response blocks the server sends.

Decoding uses the ``hpack`` package. A client's header blocks repeat: after the first call on
a connection, a gRPC client's block is usually a handful of indexed references into the
dynamic table, byte for byte the same each time. Such a block decodes to the same headers for
as long as the dynamic table is unchanged, so the parsed ``RequestHead`` is cached by the
block's bytes and the cache is dropped whenever a decode changes the table.

Encoding (``ResponseEncoder``, one per connection) puts the three constant response fields
(``content-type``, ``grpc-accept-encoding``, ``grpc-status: 0``) into the client's dynamic
table the first time they are sent; after that a response's headers are 3 bytes and its
trailers 1, which the client decodes without parsing a string. Everything else is a literal
without indexing, so those three entries stay at fixed indices for the life of the connection.
If the client shrinks its table below the default, the encoder sets it to 0 and sends
literals only.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import cast

import hpack

from tidal.frontends.grpc.h2.frames import COMPRESSION_ERROR, H2ConnectionError

GRPC_CONTENT_TYPE = b"application/grpc"
MAX_HEADER_LIST_SIZE = 64 * 1024
_CACHE_LIMIT = 256

# headers that are transport, not call metadata (grpc.aio leaves these out too)
_NOT_METADATA = frozenset(
    (b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding")
)
_TIMEOUT = re.compile(rb"(\d{1,8})([HMSmun])")
_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


@dataclass(eq=False)
class RequestHead:
    """What a request's header block says, parsed once per distinct block."""

    path: str = ""
    method: bytes = b""
    scheme: bytes = b""
    content_type: bytes = b""
    encoding: str = "identity"
    timeout: float | None = None
    authorization: str | None = None
    content_length: int = -1  # -1: no content-length
    metadata: tuple[tuple[str, str | bytes], ...] = ()
    problem: str = ""  # why the block is malformed as a request ("" when it is fine)
    trailer_problem: str = ""  # why it is malformed as trailers
    # the bearer-auth verdict for this head, computed once per set of keys (see calls.py)
    refusal: str | None = None
    refusal_keys: object = None

    @property
    def is_grpc(self) -> bool:
        return self.content_type.startswith(GRPC_CONTENT_TYPE)


def parse_timeout(value: bytes) -> float | None:
    """Seconds of a ``grpc-timeout`` value (``100m``, ``5S``...), None when malformed."""
    match = _TIMEOUT.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


# RFC 9113 8.2.1: a name is lower-case visible ASCII without a colon, except the one that
# starts a pseudo-header; checked over all of a block's names, joined by LF, in one match.
_TOKEN = rb"[!-9;-@\[-~]+"
_NAMES = re.compile(rb"(?::?" + _TOKEN + rb"(?:\n:?" + _TOKEN + rb")*)?")
_BAD_VALUE = re.compile(rb"[\0\r\n]")  # in any value (joined: no separator can hide one)
# RFC 9113 8.2.2: connection-specific fields (``te`` is checked apart: ``trailers`` may pass)
_CONNECTION_SPECIFIC = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)
_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority"))


def field_problem(names: list[bytes], values: list[bytes]) -> str:
    """Why fields are malformed in any header section (RFC 9113 8.2); "" when they are fine.

    Leading or trailing whitespace in a value is accepted, as grpc-core's server does."""
    if _NAMES.fullmatch(b"\n".join(names)) is None:
        return "a field name is empty, upper-case or holds a character a name may not"
    if _BAD_VALUE.search(b"".join(values)) is not None:
        return "a field value holds CR, LF or NUL"
    if not _CONNECTION_SPECIFIC.isdisjoint(names):
        return "a connection-specific field"
    return ""


def _pseudo_headers(head: RequestHead, fields: list[tuple[bytes, bytes]]) -> int:
    """Read the leading pseudo-headers into ``head``; the index of the first regular field."""
    seen: set[bytes] = set()
    for at, (name, value) in enumerate(fields):
        if name[:1] != b":":
            return at
        if name in seen or name not in _PSEUDO:
            head.problem = f"duplicate or unexpected pseudo-header {name.decode('latin-1')}"
        seen.add(name)
        if name == b":path":
            head.path = value.decode("latin-1")
        elif name == b":method":
            head.method = value
        elif name == b":scheme":
            head.scheme = value
    return len(fields)


def _set_content_type(head: RequestHead, value: bytes) -> None:
    head.content_type = value


def _set_encoding(head: RequestHead, value: bytes) -> None:
    head.encoding = value.decode("latin-1").strip().lower()


def _set_timeout(head: RequestHead, value: bytes) -> None:
    head.timeout = parse_timeout(value)


def _set_authorization(head: RequestHead, value: bytes) -> None:
    head.authorization = value.decode("latin-1")


def _set_te(head: RequestHead, value: bytes) -> None:
    if value != b"trailers":
        head.problem = "te other than trailers"


def _set_content_length(head: RequestHead, value: bytes) -> None:
    if value.isdigit():
        head.content_length = int(value)
    else:
        head.problem = "content-length is not a number"


_FIELDS = {
    b"content-type": _set_content_type,
    b"grpc-encoding": _set_encoding,
    b"grpc-timeout": _set_timeout,
    b"authorization": _set_authorization,
    b"te": _set_te,
    b"content-length": _set_content_length,
}


def _metadata(head: RequestHead, fields: list[tuple[bytes, bytes]]) -> None:
    """The regular fields: those the transport reads, and the call's metadata."""
    metadata: list[tuple[str, str | bytes]] = []
    for name, value in fields:
        if name[:1] == b":":
            head.problem = "pseudo-header after a regular header"
            continue
        known = _FIELDS.get(name)
        if known is not None:
            known(head, value)
        if name in _NOT_METADATA:
            continue
        key = name.decode("latin-1")
        if key.endswith("-bin"):
            try:
                metadata.append((key, base64.b64decode(value + b"=" * (-len(value) % 4))))
            except ValueError:
                head.problem = f"metadata {key} is not base64"
        else:
            metadata.append((key, value.decode("latin-1")))
    head.metadata = tuple(metadata)


def head_from(fields: list[tuple[bytes, bytes]]) -> RequestHead:
    """A ``RequestHead`` from decoded (name, value) pairs, checked as a request (``problem``)
    and as trailers (``trailer_problem``) by RFC 9113 8.2 and 8.3."""
    head = RequestHead()
    names = [name for name, _ in fields]
    problem = field_problem(names, [value for _, value in fields])
    at = _pseudo_headers(head, fields)
    _metadata(head, fields[at:])
    if problem:
        head.problem = head.trailer_problem = problem
    elif at or any(name[:1] == b":" for name in names):
        head.trailer_problem = "a pseudo-header in trailers"
    if not head.problem:
        if not head.path:
            head.problem = "missing or empty :path"
        elif not head.method or not head.scheme:
            head.problem = "missing :method or :scheme"
    return head


class HeaderDecoder:
    """One connection's HPACK decoder, with the ``RequestHead`` cache described above."""

    __slots__ = ("_cache", "_decoder", "_first", "_size")

    def __init__(self, max_header_list_size: int = MAX_HEADER_LIST_SIZE) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=max_header_list_size)
        self._cache: dict[bytes, RequestHead] = {}
        # The table's state after the last decode: its first entry (held, so that its
        # identity cannot be reused), its length and its size limit.
        self._first: object = None
        self._size = (0, self._decoder.header_table.maxsize)

    def decode(self, block: bytes) -> RequestHead:
        """The head of ``block``; ``H2ConnectionError`` (COMPRESSION_ERROR) when undecodable."""
        head = self._cache.get(block)
        if head is not None:
            return head
        try:
            fields = self._decoder.decode(block, raw=True)
        except hpack.HPACKError as exc:
            raise H2ConnectionError(COMPRESSION_ERROR, f"bad header block: {exc}") from None
        head = head_from(cast("list[tuple[bytes, bytes]]", list(fields)))  # raw: bytes
        table = self._decoder.header_table
        entries = table.dynamic_entries
        first = entries[0] if entries else None
        size = (len(entries), table.maxsize)
        if first is not self._first or size != self._size:
            self._first = first
            self._size = size
            self._cache.clear()  # decoded against the old table: stale
        elif len(self._cache) < _CACHE_LIMIT:
            self._cache[bytes(block)] = head
        return head


# -- encoding -----------------------------------------------------------------------------------


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer with an N-bit prefix, OR-ed into ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: bytes) -> bytes:
    return _integer(len(value), 7, 0) + value  # no Huffman: cheaper, and the blocks are small


def literal(name: bytes, value: bytes) -> bytes:
    """A literal field without indexing and with a literal name."""
    return b"\x00" + _string(name) + _string(value)


def literal_indexed_name(index: int, value: bytes) -> bytes:
    """A literal field without indexing whose name is static-table entry ``index``."""
    return _integer(index, 4, 0) + _string(value)


def literal_incremental(name: bytes, value: bytes) -> bytes:
    """A literal field with incremental indexing and a literal name."""
    return b"\x40" + _string(name) + _string(value)


TABLE_SIZE_ZERO = b"\x20"  # dynamic table size update to 0
DEFAULT_TABLE_SIZE = 4096
_STATUS_200 = b"\x88"  # static entry 8
_CONTENT_TYPE = literal_indexed_name(31, GRPC_CONTENT_TYPE)
_ACCEPT = literal(b"grpc-accept-encoding", b"identity,deflate,gzip")

RESPONSE_HEADERS = _STATUS_200 + _CONTENT_TYPE + _ACCEPT
TRAILERS_OK = literal(b"grpc-status", b"0")

# The response fields as they enter the client's table (content-type first), and as indexed
# references once there: with two entries, accept-encoding is 62 and content-type 63; once
# grpc-status is added it is 62, and the others move to 63 and 64.
_ACCEPT_VALUE = b"identity,deflate,gzip"
_HEADERS_INDEXING = (
    _STATUS_200
    + _integer(31, 6, 0x40)
    + _string(GRPC_CONTENT_TYPE)
    + literal_incremental(b"grpc-accept-encoding", _ACCEPT_VALUE)
)
_HEADERS_TWO = _STATUS_200 + b"\xbf\xbe"
_STATUS_INDEXING = literal_incremental(b"grpc-status", b"0")
_HEADERS_THREE = _STATUS_200 + b"\xc0\xbf"
_STATUS_THREE = b"\xbe"


class ResponseEncoder:
    """One connection's response header blocks (see the module docstring).

    Blocks must be taken in the order they go on the wire: each call may change the table.
    """

    __slots__ = ("_prefix", "_state")

    def __init__(self) -> None:
        self._state = 0  # entries in the client's table; -1: literals only
        self._prefix = b""  # a table size update owed before the next block

    def headers(self) -> bytes:
        """The response headers block (``:status 200``, content type, accepted encodings)."""
        state = self._state
        if state == 2:
            return _HEADERS_THREE
        if state == 1:
            return _HEADERS_TWO
        if state == 0:
            self._state = 1
            return _HEADERS_INDEXING
        return self.literal(RESPONSE_HEADERS)

    def ok_trailers(self) -> bytes:
        """The ``grpc-status: 0`` trailers block."""
        state = self._state
        if state == 2:
            return _STATUS_THREE
        if state == 1:
            self._state = 2
            return _STATUS_INDEXING
        return self.literal(TRAILERS_OK)

    def literal(self, block: bytes) -> bytes:
        """A block of literals without indexing, after any table size update owed."""
        prefix = self._prefix
        if prefix:
            self._prefix = b""
            return prefix + block
        return block

    def table_size(self, size: int) -> None:
        """The client's SETTINGS_HEADER_TABLE_SIZE: below the default, literals only."""
        if size < DEFAULT_TABLE_SIZE and self._state != -1:
            self._state = -1
            self._prefix = TABLE_SIZE_ZERO


# grpc-message: percent-encode bytes outside printable ASCII, and '%' itself
_SAFE = frozenset(range(0x20, 0x7F)) - {0x25}


def percent_encode(message: str) -> bytes:
    raw = message.encode("utf-8", "replace")
    if all(b in _SAFE for b in raw):
        return raw
    return b"".join(bytes((b,)) if b in _SAFE else b"%%%02X" % b for b in raw)


def trailers(code: int, message: str, metadata: tuple[tuple[str, str | bytes], ...] = ()) -> bytes:
    """A trailers block: ``grpc-status``, ``grpc-message`` when there is one, metadata."""
    if code == 0 and not message and not metadata:
        return TRAILERS_OK
    parts = [literal(b"grpc-status", b"%d" % code)]
    if message:
        parts.append(literal(b"grpc-message", percent_encode(message)))
    parts.extend(metadata_fields(metadata))
    return b"".join(parts)


def trailers_only(code: int, message: str, metadata: tuple = ()) -> bytes:
    """A trailers-only response: the response headers and the trailers in one block."""
    return _STATUS_200 + _CONTENT_TYPE + trailers(code, message, metadata)


def http_status(status: int) -> bytes:
    """A non-gRPC response block (``:status``; 405 names the one method served, POST), for
    requests that are not gRPC."""
    block = literal_indexed_name(8, b"%d" % status)
    if status == 405:
        block += literal_indexed_name(22, b"POST")  # allow
    return block


def metadata_fields(metadata: tuple[tuple[str, str | bytes], ...]) -> list[bytes]:
    fields = []
    for key, value in metadata:
        name = key.lower().encode("latin-1")
        if name.endswith(b"-bin"):
            raw = value if isinstance(value, bytes) else value.encode("latin-1")
            data = base64.b64encode(raw).rstrip(b"=")
        else:
            data = value.encode("latin-1") if isinstance(value, str) else bytes(value)
            if b"\r" in data or b"\n" in data:
                continue  # never a header break
        fields.append(literal(name, data))
    return fields
