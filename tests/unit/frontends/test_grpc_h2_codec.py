"""The pure parts of the HTTP/2 gRPC transport: frames, HPACK use, gRPC message framing and
the servicer context."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib

import grpc
import hpack
import pytest

from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.context import CallContext, code_number
from tidal.frontends.grpc.h2.headers import (
    RESPONSE_HEADERS,
    TABLE_SIZE_ZERO,
    HeaderDecoder,
    ResponseEncoder,
    parse_timeout,
    percent_encode,
    trailers,
    trailers_only,
)
from tidal.frontends.grpc.h2.messages import (
    INTERNAL,
    RESOURCE_EXHAUSTED,
    MessageError,
    MessageReader,
    frame,
)

# -- frames ---------------------------------------------------------------------------------


def _parse(data: bytes) -> list[tuple[int, int, int, bytes]]:
    out = []
    at = 0
    while at < len(data):
        high, low, kind, flags, sid = f.HEAD.unpack_from(data, at)
        length = high << 8 | low
        out.append((kind, flags, sid, data[at + 9 : at + 9 + length]))
        at += 9 + length
    assert at == len(data)
    return out


def test_frame_header_round_trip():
    header = f.head(0x123456, f.DATA, f.END_STREAM, 0x7FFFFFFF)
    assert len(header) == 9
    assert header[:3] == b"\x12\x34\x56"
    assert _parse(header + b"x" * 0x123456)[0][:3] == (f.DATA, f.END_STREAM, 0x7FFFFFFF)


def test_settings_and_control_frames():
    (settings,) = _parse(f.settings({f.INITIAL_WINDOW_SIZE: 1 << 20, f.MAX_FRAME_SIZE: 1 << 14}))
    assert settings[0] == f.SETTINGS and settings[2] == 0
    assert f.parse_settings(settings[3]) == [(f.INITIAL_WINDOW_SIZE, 1 << 20), (5, 1 << 14)]
    assert _parse(f.SETTINGS_ACK) == [(f.SETTINGS, f.ACK, 0, b"")]
    assert _parse(f.ping_ack(b"12345678")) == [(f.PING, f.ACK, 0, b"12345678")]
    (update,) = _parse(f.window_update(3, 1000))
    assert update[:3] == (f.WINDOW_UPDATE, 0, 3) and f.u32(update[3]) == 1000
    (reset,) = _parse(f.rst_stream(5, f.CANCEL))
    assert f.u32(reset[3]) == f.CANCEL
    (goaway,) = _parse(f.goaway(7, f.PROTOCOL_ERROR, b"why"))
    assert f.u32(goaway[3][:4]) == 7 and f.u32(goaway[3][4:8]) == f.PROTOCOL_ERROR
    assert goaway[3][8:] == b"why"


def test_a_large_header_block_continues_in_continuation_frames():
    block = bytes(range(256)) * 100  # 25,600 bytes
    parsed = _parse(f.headers(1, block, True, 10_000))
    assert [p[0] for p in parsed] == [f.HEADERS, f.CONTINUATION, f.CONTINUATION]
    assert parsed[0][1] == f.END_STREAM  # END_STREAM on HEADERS, END_HEADERS on the last
    assert parsed[-1][1] == f.END_HEADERS and parsed[1][1] == 0
    assert b"".join(p[3] for p in parsed) == block
    assert _parse(f.headers(1, b"ab", False, 10_000)) == [(f.HEADERS, f.END_HEADERS, 1, b"ab")]


# -- HPACK ----------------------------------------------------------------------------------

REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/inference.GRPCInferenceService/ModelInfer"),
    (":authority", "localhost"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("grpc-encoding", "gzip"),
    ("grpc-timeout", "250m"),
    ("authorization", "Bearer k"),
    ("x-trace-bin", "AAEC"),
    ("user-agent", "grpc-c/1"),
]


def test_request_head_from_a_block():
    head = HeaderDecoder().decode(hpack.Encoder().encode(REQUEST))
    assert head.path == "/inference.GRPCInferenceService/ModelInfer"
    assert head.is_grpc and not head.problem
    assert head.encoding == "gzip"
    assert head.timeout == pytest.approx(0.25)
    assert head.authorization == "Bearer k"
    assert ("x-trace-bin", b"\x00\x01\x02") in head.metadata
    assert ("user-agent", "grpc-c/1") in head.metadata
    assert not any(k in ("te", "content-type", "grpc-timeout") for k, _ in head.metadata)


@pytest.mark.parametrize(
    "fields",
    [
        [(":method", "GET"), (":path", "/x"), ("content-type", "application/grpc")],
        [(":method", "POST"), ("content-type", "application/grpc")],
        [("content-type", "application/grpc"), (":method", "POST"), (":path", "/x")],
        [(":method", "POST"), (":path", "/x"), (":status", "200")],
    ],
    ids=["not-post", "no-path", "pseudo-after-regular", "response-pseudo"],
)
def test_malformed_request_heads(fields):
    assert HeaderDecoder().decode(hpack.Encoder().encode(fields)).problem


def test_the_head_cache_follows_the_dynamic_table():
    encoder = hpack.Encoder()
    decoder = HeaderDecoder()
    first = encoder.encode(REQUEST)  # literals with indexing: changes the table
    assert decoder.decode(first).path.endswith("ModelInfer")
    repeat = encoder.encode(REQUEST)  # now pure indexed references
    assert repeat != first and len(repeat) < 20
    head = decoder.decode(repeat)
    assert decoder.decode(repeat) is head  # cached
    # A block that changes the table invalidates the cache: the same indexed bytes may now
    # mean something else.
    other = [*REQUEST[:2], (":path", "/inference.GRPCInferenceService/ServerLive"), *REQUEST[3:]]
    assert decoder.decode(encoder.encode(other)).path.endswith("ServerLive")
    assert decoder.decode(encoder.encode(REQUEST)).path.endswith("ModelInfer")


def test_an_undecodable_block_is_a_compression_error():
    with pytest.raises(f.H2ConnectionError) as failed:
        HeaderDecoder().decode(b"\xff\xff\xff\xff")
    assert failed.value.code == f.COMPRESSION_ERROR


def test_response_blocks_decode_with_a_standard_decoder():
    decoder = hpack.Decoder()
    assert decoder.decode(TABLE_SIZE_ZERO + RESPONSE_HEADERS) == [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-accept-encoding", "identity,deflate,gzip"),
    ]
    assert decoder.decode(trailers(0, "")) == [("grpc-status", "0")]
    block = trailers_only(5, "no model 'x' 100%\n✓", (("k", "v"), ("d-bin", b"\x00")))
    assert decoder.decode(block) == [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-status", "5"),
        ("grpc-message", "no model 'x' 100%25%0A%E2%9C%93"),
        ("k", "v"),
        ("d-bin", "AA"),
    ]
    long = trailers(13, "x" * 300)  # lengths past the 7-bit prefix
    assert decoder.decode(long)[1] == ("grpc-message", "x" * 300)


def test_percent_encoding_and_timeouts():
    assert percent_encode("plain text") == b"plain text"
    assert percent_encode("50%") == b"50%25"
    assert parse_timeout(b"5S") == 5.0
    assert parse_timeout(b"2H") == 7200.0
    assert parse_timeout(b"10u") == pytest.approx(1e-5)
    assert parse_timeout(b"123456789S") is None  # at most 8 digits
    assert parse_timeout(b"5x") is None


# -- gRPC messages --------------------------------------------------------------------------


def test_several_messages_in_one_payload():
    reader = MessageReader(1 << 20)
    data = frame(b"one") + frame(b"") + frame(b"three")
    assert reader.feed(data) == [b"one", b"", b"three"]
    assert not reader.partial


def test_messages_split_anywhere():
    data = frame(b"a" * 1000) + frame(b"bc")
    for step in (1, 2, 3, 5, 7, 999, 1004):
        reader = MessageReader(1 << 20)
        got = []
        for at in range(0, len(data), step):
            got += reader.feed(data, at, min(at + step, len(data)))
        assert got == [b"a" * 1000, b"bc"], step
        assert not reader.partial


def test_a_truncated_message_is_partial():
    reader = MessageReader(100)
    assert reader.feed(frame(b"abcdef")[:7]) == []
    assert reader.partial
    reader = MessageReader(100)
    assert reader.feed(b"\x00\x00") == []
    assert reader.partial


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_compressed_messages(encoding, compress):
    payload = b"tensor" * 1000
    packed = compress(payload)
    data = b"\x01" + len(packed).to_bytes(4, "big") + packed
    reader = MessageReader(1 << 20, encoding)
    assert reader.feed(data[:10]) + reader.feed(data[10:]) == [payload]


def test_message_errors():
    with pytest.raises(MessageError) as failed:
        MessageReader(10).feed(frame(b"x" * 11))
    assert failed.value.code == RESOURCE_EXHAUSTED
    with pytest.raises(MessageError) as failed:
        MessageReader(10).feed(b"\x01\x00\x00\x00\x01x")  # compressed, identity encoding
    assert failed.value.code == INTERNAL
    with pytest.raises(MessageError) as failed:
        MessageReader(10, "gzip").feed(b"\x01\x00\x00\x00\x03abc")
    assert failed.value.code == INTERNAL
    bomb = gzip.compress(b"\x00" * 10_000)
    with pytest.raises(MessageError) as failed:
        MessageReader(1000, "gzip").feed(b"\x01" + len(bomb).to_bytes(4, "big") + bomb)
    assert failed.value.code == RESOURCE_EXHAUSTED
    with pytest.raises(MessageError):
        MessageReader(10).feed(b"\x07\x00\x00\x00\x00")  # an unknown flag


def test_the_response_encoder_indexes_its_constant_fields_once():
    encoder = ResponseEncoder()
    decoder = hpack.Decoder()
    headers = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-accept-encoding", "identity,deflate,gzip"),
    ]
    first = encoder.headers()
    assert decoder.decode(first) == headers
    second = encoder.headers()  # a second call's headers before the first one's trailers
    assert len(second) == 3 and decoder.decode(second) == headers
    assert decoder.decode(encoder.ok_trailers()) == [("grpc-status", "0")]
    assert decoder.decode(encoder.literal(trailers(5, "gone"))) == [
        ("grpc-status", "5"),
        ("grpc-message", "gone"),
    ]
    for _ in range(3):  # from now on: 3 bytes and 1 byte
        block = encoder.headers()
        assert len(block) == 3 and decoder.decode(block) == headers
        block = encoder.ok_trailers()
        assert len(block) == 1 and decoder.decode(block) == [("grpc-status", "0")]
    # The client shrinks its table: a size update to 0, then literals only.
    encoder.table_size(0)
    decoder.max_allowed_table_size = 0
    block = encoder.headers()
    assert block[:1] == TABLE_SIZE_ZERO
    assert decoder.decode(block) == headers  # (a decoder refuses a block without the update)
    assert decoder.header_table.maxsize == 0
    assert decoder.decode(encoder.ok_trailers()) == [("grpc-status", "0")]
    assert decoder.decode(encoder.headers()) == headers


def test_a_table_of_the_default_size_or_more_keeps_the_indexed_fields():
    encoder = ResponseEncoder()
    encoder.headers()
    encoder.table_size(65536)
    assert len(encoder.headers()) == 3


# -- the servicer context -------------------------------------------------------------------


def test_the_call_context_records_what_the_servicer_says():
    context = CallContext((("user-agent", "x"),), None, "ipv4:127.0.0.1:1")
    assert context.invocation_metadata() == (("user-agent", "x"),)
    assert context.time_remaining() is None and not context.cancelled()
    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(context.abort(grpc.StatusCode.NOT_FOUND, "no such model"))
    assert context.code() == grpc.StatusCode.NOT_FOUND
    assert context.details() == "no such model"
    assert code_number(grpc.StatusCode.NOT_FOUND) == 5
    with pytest.raises(ValueError):
        asyncio.run(context.abort(grpc.StatusCode.OK))
    timed = CallContext((), time.monotonic() + 10, "")
    assert 9 < timed.time_remaining() <= 10
