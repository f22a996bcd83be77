"""tidal's HTTP/2 server held to RFC 9113 and RFC 7541, in the spirit of h2spec.

A real ``tidal serve`` on a free loopback port; each test opens a raw connection (``h2_raw``)
and sends what the rule is about, then asserts the exact answer: the GOAWAY code for a
connection error, the RST_STREAM code for a stream error, or that the connection goes on
(a PING answered) where the rule says to ignore something. Test names carry h2spec's section
and case numbers (``generic``, ``http2``, ``hpack`` groups).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hyperframe.frame import DataFrame, HeadersFrame, PingFrame, RstStreamFrame

from . import h2_raw as h
from .conftest import TidalServer, running_server
from .h2_raw import H2Raw


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidalServer]:
    repo: Path = tmp_path_factory.mktemp("h2_conformance_repo")
    flags = ["--grpc-address", "127.0.0.1", "--grpc-transport", "tidal"]
    with running_server(repo, flags=flags) as proc:
        yield proc


@pytest.fixture
def port(server: TidalServer) -> int:
    assert server.grpc_port is not None
    return server.grpc_port


@pytest.fixture
def conn(port: int) -> Iterator[H2Raw]:
    client = H2Raw(port).handshake()
    yield client
    client.close()


def _ok(c: H2Raw, sid: int) -> None:
    """Stream ``sid`` answered ServerLive with grpc-status 0."""
    head, body, trailers = c.response(sid)
    assert dict(head or trailers).get(b":status", dict(head or trailers).get(":status")) in (
        b"200",
        "200",
    )
    assert (b"grpc-status", b"0") in trailers or ("grpc-status", "0") in trailers
    assert body[:1] == b"\x00"


# == generic ====================================================================================


def test_generic_1_1_preface(conn: H2Raw) -> None:
    conn.send(conn.call(1))
    _ok(conn, 1)


def test_generic_2_1_priority_on_idle_stream(conn: H2Raw) -> None:
    conn.send(h.priority(1, 0), conn.call(1))
    _ok(conn, 1)


def test_generic_2_2_window_update_on_half_closed_remote(conn: H2Raw) -> None:
    conn.send(conn.call(1), h.window_update(1, 100))
    _ok(conn, 1)


def test_generic_2_3_priority_on_half_closed_remote(conn: H2Raw) -> None:
    conn.send(conn.call(1), h.priority(1, 0))
    _ok(conn, 1)


def test_generic_2_4_rst_stream_on_half_closed_remote(conn: H2Raw) -> None:
    conn.send(conn.call(1), h.rst_stream(1, h.CANCEL))
    conn.expect_alive()


def test_generic_2_5_priority_on_closed_stream(conn: H2Raw) -> None:
    conn.send(conn.call(1))
    _ok(conn, 1)
    conn.send(h.priority(1, 0))
    conn.expect_alive()


def test_generic_3_1_data_frames(conn: H2Raw) -> None:
    msg = h.EMPTY_MESSAGE
    conn.send(
        conn.headers(1), h.data(1, msg[:2]), h.data(1, msg[2:]), h.data(1, b"", end_stream=True)
    )
    _ok(conn, 1)


def test_generic_3_1_3_data_with_padding(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.data(1, h.EMPTY_MESSAGE, end_stream=True, pad=8))
    _ok(conn, 1)


def test_generic_3_2_2_headers_with_padding(conn: H2Raw) -> None:
    conn.send(conn.headers(1, pad=16), h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


def test_generic_3_2_3_headers_with_priority(conn: H2Raw) -> None:
    conn.send(conn.headers(1, depends_on=0), h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


@pytest.mark.parametrize("weight", [0, 255])
def test_generic_3_3_priority_weights(conn: H2Raw, weight: int) -> None:
    conn.send(h.priority(1, 0, weight), h.priority(3, 1, weight, exclusive=True), conn.call(3))
    _ok(conn, 3)


def test_generic_3_4_rst_stream(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.rst_stream(1, h.CANCEL))
    conn.expect_alive()


def test_generic_3_5_settings_initial_values(conn: H2Raw) -> None:
    conn.send(h.settings({h.HEADER_TABLE_SIZE: 4096, h.ENABLE_PUSH: 0, h.MAX_FRAME_SIZE: 16384}))
    frames = conn.expect_alive()
    assert any(f.type == h.SETTINGS and "ACK" in f.flags for f in frames)


def test_generic_3_7_ping(conn: H2Raw) -> None:
    conn.expect_alive()


def test_generic_3_8_goaway(conn: H2Raw) -> None:
    conn.send(h.goaway(0, h.NO_ERROR))
    conn.expect_closed()


def test_generic_3_9_window_update(conn: H2Raw) -> None:
    conn.send(h.window_update(0, 1), conn.headers(1), h.window_update(1, 1))
    conn.send(h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


def test_generic_3_10_continuation(conn: H2Raw) -> None:
    block = conn.block()
    cut = len(block) // 3
    conn.send(
        conn.headers(1, block=block[:cut], end_headers=False),
        h.frame(h.CONTINUATION, 0, 1, block[cut : 2 * cut]),
        h.frame(h.CONTINUATION, h.END_HEADERS, 1, block[2 * cut :]),
        h.data(1, h.EMPTY_MESSAGE, end_stream=True),
    )
    _ok(conn, 1)


def test_generic_4_3_post_with_trailers(conn: H2Raw) -> None:
    trailers = conn.block([("x-trailer", "1")])
    conn.send(conn.headers(1), h.data(1, h.EMPTY_MESSAGE))
    conn.send(conn.headers(1, block=trailers, end_stream=True))
    _ok(conn, 1)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_generic_4_1_other_methods_get_an_http_answer(conn: H2Raw, method: str) -> None:
    """A well-formed request that is not gRPC gets an HTTP status, not a reset."""
    fields = [(":method", method), (":scheme", "http"), (":path", "/"), (":authority", "x")]
    conn.send(conn.headers(1, fields, end_stream=True))
    _head, _body, answer = conn.response(1)
    assert dict(answer)[":status"] == "405", answer
    assert dict(answer)["allow"] == "POST", answer


def test_generic_5_hpack_representations(conn: H2Raw) -> None:
    """Indexed (static and dynamic), literal with/without/never indexing, Huffman."""
    enc = h.hpack.Encoder()
    conn.encoder = enc
    fields = [*h.request_fields(), ("x-a", "1")]
    first = enc.encode(fields)  # adds to the dynamic table
    again = enc.encode(fields)  # indexed references into it
    never = enc.encode([*h.request_fields(), h.hpack.NeverIndexedHeaderTuple("x-secret", "s")])
    plain = enc.encode(fields, huffman=False)
    for sid, block in zip((1, 3, 5, 7), (first, again, never, plain), strict=True):
        conn.send(conn.headers(sid, block=block), h.data(sid, h.EMPTY_MESSAGE, end_stream=True))
        _ok(conn, sid)


# == http2 3.5: the connection preface ==========================================================


def test_http2_3_5_1_preface(conn: H2Raw) -> None:
    conn.expect_alive()


def test_http2_3_5_2_invalid_preface(port: int) -> None:
    c = H2Raw(port)
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + h.settings())
    c.expect_goaway(h.PROTOCOL_ERROR)
    c.close()


def test_http2_3_5_3_preface_not_followed_by_settings(port: int) -> None:
    c = H2Raw(port)
    c.send(h.PREFACE, h.ping())
    c.expect_goaway(h.PROTOCOL_ERROR)
    c.close()


# == http2 4: frames ============================================================================


def test_http2_4_1_1_unknown_frame_type(conn: H2Raw) -> None:
    conn.send(h.frame(0x66, 0, 0, b"ignored"), h.frame(0x66, 0xFF, 1, b"ignored too"))
    conn.expect_alive()


def test_http2_4_1_2_undefined_flags(conn: H2Raw) -> None:
    conn.send(h.frame(h.PING, 0x16, 0, b"flagged!"))
    frames = conn.expect_alive()
    assert any(isinstance(f, PingFrame) and f.opaque_data == b"flagged!" for f in frames)


def test_http2_4_1_3_reserved_bit(conn: H2Raw) -> None:
    block = conn.block()
    conn.send(h.frame(h.HEADERS, h.END_HEADERS, 0x80000001, block))
    conn.send(h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


def test_http2_4_2_1_data_of_16384(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.data(1, b"\x00" * 16384), h.rst_stream(1, h.CANCEL))
    conn.expect_alive()


def test_http2_4_2_2_data_beyond_max_frame_size(conn: H2Raw) -> None:
    limit = conn.server_settings.get(h.MAX_FRAME_SIZE, 16384)
    conn.send(conn.headers(1), h.frame(h.DATA, 0, 1, b"", length=limit + 1), b"\x00" * 100)
    conn.expect_goaway(h.FRAME_SIZE_ERROR)


def test_http2_4_2_3_headers_beyond_max_frame_size(conn: H2Raw) -> None:
    limit = conn.server_settings.get(h.MAX_FRAME_SIZE, 16384)
    conn.send(h.frame(h.HEADERS, h.END_HEADERS, 1, b"", length=limit + 1), b"\x00" * 100)
    conn.expect_goaway(h.FRAME_SIZE_ERROR)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [(h.PING, b"1234567"), (h.WINDOW_UPDATE, b"\x00\x00\x01"), (h.SETTINGS, b"\x00\x01\x00")],
    ids=["ping-7", "window-update-3", "settings-3"],
)
def test_http2_4_2_frame_size_error_on_fixed_size_frames(
    conn: H2Raw, kind: int, payload: bytes
) -> None:
    conn.send(h.frame(kind, 0, 0, payload))
    conn.expect_goaway(h.FRAME_SIZE_ERROR)


def test_http2_4_3_1_invalid_header_block(conn: H2Raw) -> None:
    conn.send(conn.headers(1, block=b"\xff\xff\xff\xff"))
    conn.expect_goaway(h.COMPRESSION_ERROR)


def test_http2_4_3_2_priority_inside_header_block(conn: H2Raw) -> None:
    block = conn.block()
    conn.send(conn.headers(1, block=block[:5], end_headers=False), h.priority(1, 0))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_4_3_3_headers_of_another_stream_inside_header_block(conn: H2Raw) -> None:
    block = conn.block()
    conn.send(conn.headers(1, block=block[:5], end_headers=False), conn.headers(3))
    conn.expect_goaway(h.PROTOCOL_ERROR)


# == http2 5.1: stream states ===================================================================


def test_http2_5_1_1_idle_data(conn: H2Raw) -> None:
    conn.send(h.data(1, h.EMPTY_MESSAGE))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_5_1_2_idle_rst_stream(conn: H2Raw) -> None:
    conn.send(h.rst_stream(1, h.CANCEL))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_5_1_3_idle_window_update(conn: H2Raw) -> None:
    conn.send(h.window_update(1, 100))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_5_1_4_idle_continuation(conn: H2Raw) -> None:
    conn.send(h.frame(h.CONTINUATION, h.END_HEADERS, 1, conn.block()))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_5_1_5_half_closed_remote_data(conn: H2Raw) -> None:
    conn.send(conn.call(1), h.data(1, h.EMPTY_MESSAGE))
    conn.expect_error(1, h.STREAM_CLOSED)


def test_http2_5_1_6_half_closed_remote_headers(conn: H2Raw) -> None:
    conn.send(conn.call(1), conn.headers(1, block=conn.block([("x-late", "1")])))
    conn.expect_error(1, h.STREAM_CLOSED)


def test_http2_5_1_7_half_closed_remote_continuation(conn: H2Raw) -> None:
    conn.send(conn.call(1), h.frame(h.CONTINUATION, h.END_HEADERS, 1, conn.block()))
    conn.expect_goaway(h.PROTOCOL_ERROR)  # no header block is open: a connection error


def test_http2_5_1_8_closed_data_after_rst_stream(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.rst_stream(1, h.CANCEL), h.data(1, h.EMPTY_MESSAGE))
    conn.expect_error(1, h.STREAM_CLOSED)


def test_http2_5_1_9_closed_headers_after_rst_stream(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.rst_stream(1, h.CANCEL), conn.headers(1))
    conn.expect_error(1, h.STREAM_CLOSED)


def test_http2_5_1_10_closed_continuation_after_rst_stream(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.rst_stream(1, h.CANCEL))
    conn.send(h.frame(h.CONTINUATION, h.END_HEADERS, 1, conn.block()))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_5_1_11_closed_data_after_end_stream(conn: H2Raw) -> None:
    conn.send(conn.call(1))
    _ok(conn, 1)
    conn.send(h.data(1, h.EMPTY_MESSAGE))
    conn.expect_error(1, h.STREAM_CLOSED)


def test_http2_5_1_12_closed_headers_after_end_stream(conn: H2Raw) -> None:
    conn.send(conn.call(1))
    _ok(conn, 1)
    conn.send(conn.headers(1, end_stream=True))
    conn.expect_error(1, h.STREAM_CLOSED)


def test_http2_5_1_13_closed_continuation_after_end_stream(conn: H2Raw) -> None:
    conn.send(conn.call(1))
    _ok(conn, 1)
    conn.send(h.frame(h.CONTINUATION, h.END_HEADERS, 1, conn.block()))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_5_1_ignores_frames_after_its_own_reset(conn: H2Raw) -> None:
    """RFC 9113 5.1: frames on a stream the server reset are ignored (they were in flight)."""
    conn.send(conn.headers(1), h.window_update(1, 0))  # a stream error: the server resets 1
    conn.expect_rst(1, h.PROTOCOL_ERROR)
    conn.send(h.data(1, h.EMPTY_MESSAGE), h.window_update(1, 5), h.rst_stream(1, h.CANCEL))
    frames = conn.expect_alive()
    assert not any(isinstance(f, RstStreamFrame) for f in frames), frames


def test_http2_5_1_window_update_and_rst_on_closed_are_ignored(conn: H2Raw) -> None:
    conn.send(conn.call(1))
    _ok(conn, 1)
    conn.send(h.window_update(1, 10), h.rst_stream(1, h.CANCEL))
    conn.expect_alive()


def test_http2_5_1_1_1_even_stream_id(conn: H2Raw) -> None:
    conn.send(conn.headers(2, end_stream=True))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_5_1_1_2_smaller_stream_id(conn: H2Raw) -> None:
    conn.send(conn.call(5))
    _ok(conn, 5)
    conn.send(conn.call(3))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_5_1_1_2_skipped_stream_id_is_closed(conn: H2Raw) -> None:
    conn.send(conn.headers(5), conn.headers(3))  # 5 open; 3 was skipped, so it is closed
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_5_1_2_1_stream_concurrency(conn: H2Raw) -> None:
    limit = conn.server_settings[h.MAX_CONCURRENT_STREAMS]
    block = conn.block()  # the same block each time: its fields are in the table after one
    frames = [conn.headers(1, block=block)]
    again = conn.block()
    frames += [conn.headers(2 * i + 1, block=again) for i in range(1, limit + 1)]
    conn.send(*frames)
    conn.expect_error(2 * limit + 1, h.REFUSED_STREAM)


# == http2 5.3, 5.4, 5.5 ========================================================================


def test_http2_5_3_1_1_headers_depending_on_itself(conn: H2Raw) -> None:
    conn.send(conn.headers(1, depends_on=1, end_stream=True))
    conn.expect_rst(1, h.PROTOCOL_ERROR)


def test_http2_5_3_1_2_priority_depending_on_itself(conn: H2Raw) -> None:
    conn.send(h.priority(1, 1))
    conn.expect_rst(1, h.PROTOCOL_ERROR)


def test_http2_5_4_1_1_connection_error_sends_goaway(conn: H2Raw) -> None:
    conn.send(h.frame(h.PING, 0, 3, b"12345678"))
    goaway = conn.expect_goaway(h.PROTOCOL_ERROR)
    assert goaway.last_stream_id == 0
    conn.expect_closed()


def test_http2_5_4_1_2_goaway_names_the_last_stream(conn: H2Raw) -> None:
    conn.send(conn.call(1))
    _ok(conn, 1)
    conn.send(h.frame(h.PING, 0, 3, b"12345678"))
    assert conn.expect_goaway(h.PROTOCOL_ERROR).last_stream_id == 1


def test_http2_5_5_1_unknown_extension_frame(conn: H2Raw) -> None:
    conn.send(h.frame(0x16, 0, 0, b"extension"))
    conn.expect_alive()


def test_http2_5_5_2_unknown_frame_inside_header_block(conn: H2Raw) -> None:
    block = conn.block()
    conn.send(conn.headers(1, block=block[:5], end_headers=False), h.frame(0x16, 0, 1, b"x"))
    conn.expect_goaway(h.PROTOCOL_ERROR)


# == http2 6.1 DATA, 6.2 HEADERS, 6.3 PRIORITY, 6.4 RST_STREAM ==================================


def test_http2_6_1_1_data_on_stream_0(conn: H2Raw) -> None:
    conn.send(h.data(0, h.EMPTY_MESSAGE))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_1_2_data_on_half_closed_remote(conn: H2Raw) -> None:
    conn.send(conn.headers(1, end_stream=True), h.data(1, h.EMPTY_MESSAGE))
    # the call (no request message) may be answered before the DATA is read: then the stream
    # is closed, and the DATA a connection error of the same code
    conn.expect_error(1, h.STREAM_CLOSED, answer_allowed=True)


def test_http2_6_1_3_data_with_bad_padding(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.frame(h.DATA, h.PADDED, 1, b"\x09" + b"\x00" * 8))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_1_data_with_only_a_pad_length_counts_against_the_window(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.frame(h.DATA, h.PADDED, 1, b"\x00"))
    conn.send(h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


def test_http2_6_2_1_headers_then_priority(conn: H2Raw) -> None:
    conn.send(conn.headers(1, end_headers=False), h.priority(1, 0))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_2_2_headers_then_headers_of_another_stream(conn: H2Raw) -> None:
    conn.send(conn.headers(1, end_headers=False), conn.headers(3, end_stream=True))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_2_3_headers_on_stream_0(conn: H2Raw) -> None:
    conn.send(conn.headers(0, end_stream=True))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_2_4_headers_with_bad_padding(conn: H2Raw) -> None:
    block = conn.block()
    conn.send(h.frame(h.HEADERS, h.END_HEADERS | h.PADDED, 1, bytes((len(block) + 1,)) + block))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_3_1_priority_on_stream_0(conn: H2Raw) -> None:
    conn.send(h.priority(0, 1))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_3_2_priority_of_other_than_5_bytes(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.frame(h.PRIORITY, 0, 1, b"\x00\x00\x00\x00"))
    conn.expect_rst(1, h.FRAME_SIZE_ERROR)


def test_http2_6_4_1_rst_stream_on_stream_0(conn: H2Raw) -> None:
    conn.send(h.rst_stream(0, h.CANCEL))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_4_2_rst_stream_on_idle_stream(conn: H2Raw) -> None:
    conn.send(h.rst_stream(3, h.CANCEL))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_4_3_rst_stream_of_other_than_4_bytes(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.frame(h.RST_STREAM, 0, 1, b"\x00\x00\x00"))
    conn.expect_goaway(h.FRAME_SIZE_ERROR)


# == http2 6.5 SETTINGS =========================================================================


def test_http2_6_5_1_settings_ack_with_payload(conn: H2Raw) -> None:
    conn.send(h.frame(h.SETTINGS, h.ACK, 0, b"\x00" * 6))
    conn.expect_goaway(h.FRAME_SIZE_ERROR)


def test_http2_6_5_2_settings_on_a_stream(conn: H2Raw) -> None:
    conn.send(h.settings({h.ENABLE_PUSH: 0}, sid=1))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_5_3_settings_not_a_multiple_of_6(conn: H2Raw) -> None:
    conn.send(h.frame(h.SETTINGS, 0, 0, b"\x00\x02\x00\x00"))
    conn.expect_goaway(h.FRAME_SIZE_ERROR)


@pytest.mark.parametrize(
    ("key", "value", "code"),
    [
        (h.ENABLE_PUSH, 2, h.PROTOCOL_ERROR),
        (h.INITIAL_WINDOW_SIZE, 2**31, h.FLOW_CONTROL_ERROR),
        (h.MAX_FRAME_SIZE, 16383, h.PROTOCOL_ERROR),
        (h.MAX_FRAME_SIZE, 2**24, h.PROTOCOL_ERROR),
    ],
    ids=["6.5.2.1-enable-push-2", "6.5.2.2-window", "6.5.2.3-frame-small", "6.5.2.4-frame-large"],
)
def test_http2_6_5_2_invalid_setting_values(conn: H2Raw, key: int, value: int, code: int) -> None:
    conn.send(h.settings({key: value}))
    conn.expect_goaway(code)


def test_http2_6_5_2_5_unknown_setting(conn: H2Raw) -> None:
    conn.send(h.settings({0xFF: 1}))
    conn.expect_alive()


def test_http2_6_5_3_1_several_initial_window_sizes(conn: H2Raw) -> None:
    conn.send(h.frame(h.SETTINGS, 0, 0, struct.pack(">HIHI", 4, 100, 4, 1)))
    conn.send(conn.call(1))
    got = conn.read()
    while not isinstance(got, DataFrame):
        got = conn.read()
    assert len(got.data) == 1  # the last value counts


def test_http2_6_5_3_2_settings_get_an_ack(conn: H2Raw) -> None:
    conn.send(h.settings({h.MAX_HEADER_LIST_SIZE: 1 << 16}))
    frames = conn.expect_alive()
    assert any(f.type == h.SETTINGS and "ACK" in f.flags for f in frames)


def test_http2_6_5_settings_flood_is_cut_off(port: int) -> None:
    """CVE-2019-9515: SETTINGS frames sent faster than ever needed get ENHANCE_YOUR_CALM."""
    c = H2Raw(port).handshake()
    try:
        c.send(h.settings({h.ENABLE_PUSH: 0}) * 5000)
        c.expect_goaway(h.ENHANCE_YOUR_CALM)
    finally:
        c.close()


# == http2 6.7 PING, 6.8 GOAWAY =================================================================


def test_http2_6_7_1_ping_gets_an_ack_with_its_payload(conn: H2Raw) -> None:
    conn.send(h.ping(b"\x01\x02\x03\x04\x05\x06\x07\x08"))
    got = conn.read()
    while not isinstance(got, PingFrame):
        got = conn.read()
    assert "ACK" in got.flags and got.opaque_data == b"\x01\x02\x03\x04\x05\x06\x07\x08"


def test_http2_6_7_2_ping_ack_gets_no_answer(conn: H2Raw) -> None:
    conn.send(h.ping(b"unasked!", ack=True))
    frames = conn.expect_alive()
    assert not any(isinstance(f, PingFrame) for f in frames)


def test_http2_6_7_3_ping_on_a_stream(conn: H2Raw) -> None:
    conn.send(h.frame(h.PING, 0, 1, b"12345678"))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_7_4_ping_of_other_than_8_bytes(conn: H2Raw) -> None:
    conn.send(h.frame(h.PING, 0, 0, b"123456"))
    conn.expect_goaway(h.FRAME_SIZE_ERROR)


def test_http2_6_8_1_goaway_on_a_stream(conn: H2Raw) -> None:
    conn.send(h.frame(h.GOAWAY, 0, 1, struct.pack(">II", 0, 0)))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_8_calls_in_flight_finish_after_the_clients_goaway(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.goaway(0, h.NO_ERROR), h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


# == http2 6.9 WINDOW_UPDATE ====================================================================


def test_http2_6_9_1_window_update_of_0_on_the_connection(conn: H2Raw) -> None:
    conn.send(h.window_update(0, 0))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_9_2_window_update_of_0_on_a_stream(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.window_update(1, 0))
    conn.expect_rst(1, h.PROTOCOL_ERROR)


def test_http2_6_9_3_window_update_of_other_than_4_bytes(conn: H2Raw) -> None:
    conn.send(h.frame(h.WINDOW_UPDATE, 0, 0, b"\x00\x00\x00\x01\x00"))
    conn.expect_goaway(h.FRAME_SIZE_ERROR)


def test_http2_6_9_1_1_window_of_1_gives_1_byte_frames(port: int) -> None:
    c = H2Raw(port).handshake({h.INITIAL_WINDOW_SIZE: 1})
    try:
        c.send(c.call(1))
        got = c.read()
        while not isinstance(got, DataFrame):
            got = c.read()
        assert len(got.data) == 1
        c.send(h.window_update(1, 100))
        _head, body, _trailers = c.response(1)
        assert len(body) == 6  # the rest of the 7-byte message
    finally:
        c.close()


def test_http2_6_9_1_2_connection_window_overflow(conn: H2Raw) -> None:
    conn.send(h.window_update(0, 2**31 - 1), h.window_update(0, 2**31 - 1))
    conn.expect_goaway(h.FLOW_CONTROL_ERROR)


def test_http2_6_9_1_3_stream_window_overflow(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.window_update(1, 2**31 - 1), h.window_update(1, 2**31 - 1))
    conn.expect_rst(1, h.FLOW_CONTROL_ERROR)


def test_http2_6_9_2_1_initial_window_changed_after_headers(port: int) -> None:
    c = H2Raw(port).handshake({h.INITIAL_WINDOW_SIZE: 0})
    try:
        c.send(c.call(1))
        c.expect_alive()  # nothing may be sent in a window of 0
        c.send(h.settings({h.INITIAL_WINDOW_SIZE: 100}))
        _head, body, _trailers = c.response(1)
        assert len(body) == 7
    finally:
        c.close()


def test_http2_6_9_2_2_negative_window(port: int) -> None:
    c = H2Raw(port).handshake({h.INITIAL_WINDOW_SIZE: 3})
    try:
        c.send(c.call(1))
        got = c.read()
        while not isinstance(got, DataFrame):
            got = c.read()
        assert len(got.data) == 3
        c.send(h.settings({h.INITIAL_WINDOW_SIZE: 1}))  # the stream's window is now -2
        c.expect_alive()
        c.send(h.window_update(1, 3))  # -2 + 3 = 1 byte may go
        got = c.read()
        while not isinstance(got, DataFrame):
            got = c.read()
        assert len(got.data) == 1
    finally:
        c.close()


def test_http2_6_9_2_3_initial_window_too_large(conn: H2Raw) -> None:
    conn.send(h.settings({h.INITIAL_WINDOW_SIZE: 2**31}))
    conn.expect_goaway(h.FLOW_CONTROL_ERROR)


# == http2 6.10 CONTINUATION ====================================================================


def test_http2_6_10_1_several_continuations(conn: H2Raw) -> None:
    block = conn.block()
    parts = [block[i : i + 4] for i in range(0, len(block), 4)]
    frames = [conn.headers(1, block=parts[0], end_headers=False)]
    for i, part in enumerate(parts[1:], 1):
        frames.append(h.frame(h.CONTINUATION, h.END_HEADERS if i == len(parts) - 1 else 0, 1, part))
    conn.send(*frames, h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


def test_http2_6_10_2_continuation_then_other_frame(conn: H2Raw) -> None:
    block = conn.block()
    conn.send(
        conn.headers(1, block=block[:3], end_headers=False),
        h.frame(h.CONTINUATION, 0, 1, block[3:6]),
        h.data(1, h.EMPTY_MESSAGE),
    )
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_10_3_continuation_on_stream_0(conn: H2Raw) -> None:
    block = conn.block()
    conn.send(
        conn.headers(1, block=block[:3], end_headers=False),
        h.frame(h.CONTINUATION, h.END_HEADERS, 0, block[3:]),
    )
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_10_4_continuation_after_end_headers(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.frame(h.CONTINUATION, h.END_HEADERS, 1, conn.block()))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_10_5_continuation_after_continuation_with_end_headers(conn: H2Raw) -> None:
    block = conn.block()
    conn.send(
        conn.headers(1, block=block[:3], end_headers=False),
        h.frame(h.CONTINUATION, h.END_HEADERS, 1, block[3:]),
        h.frame(h.CONTINUATION, h.END_HEADERS, 1, conn.block([("x-a", "b")])),
    )
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_10_6_continuation_after_data(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.data(1, b"\x00"), h.frame(h.CONTINUATION, h.END_HEADERS, 1, b""))
    conn.expect_goaway(h.PROTOCOL_ERROR)


def test_http2_6_10_continuation_of_another_stream(conn: H2Raw) -> None:
    block = conn.block()
    conn.send(
        conn.headers(1, block=block[:3], end_headers=False),
        h.frame(h.CONTINUATION, h.END_HEADERS, 3, block[3:]),
    )
    conn.expect_goaway(h.PROTOCOL_ERROR)


# == http2 7: error codes =======================================================================


def test_http2_7_1_goaway_with_unknown_error_code(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.goaway(0, 0xFF), h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


def test_http2_7_2_rst_stream_with_unknown_error_code(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.rst_stream(1, 0xFF))
    conn.expect_alive()


# == http2 8.1: HTTP messages ===================================================================


def test_http2_8_1_1_second_headers_without_end_stream(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.data(1, h.EMPTY_MESSAGE))
    conn.send(conn.headers(1, block=conn.block([("x-trailer", "1")])))
    conn.expect_rst(1, h.PROTOCOL_ERROR)


_BASE = h.request_fields()


def _without(name: str) -> list[tuple[str, str]]:
    return [f for f in _BASE if f[0] != name]


def _twice(name: str) -> list[tuple[str, str]]:
    return [*_BASE[:1], *[f for f in _BASE if f[0] == name], *_BASE[1:]]


MALFORMED = {
    "8.1.2-1-uppercase-name": [*_BASE, ("X-Upper", "1")],
    "8.1.2.1-1-unknown-pseudo": [*_BASE[:4], (":foo", "bar"), *_BASE[4:]],
    "8.1.2.1-2-response-pseudo": [*_BASE[:4], (":status", "200"), *_BASE[4:]],
    "8.1.2.1-4-pseudo-after-regular": [*_BASE[:3], ("x-a", "1"), *_BASE[3:]],
    "8.1.2.2-1-connection": [*_BASE, ("connection", "keep-alive")],
    "8.1.2.2-keep-alive": [*_BASE, ("keep-alive", "timeout=5")],
    "8.1.2.2-proxy-connection": [*_BASE, ("proxy-connection", "keep-alive")],
    "8.1.2.2-transfer-encoding": [*_BASE, ("transfer-encoding", "chunked")],
    "8.1.2.2-upgrade": [*_BASE, ("upgrade", "h2c")],
    "8.1.2.2-2-te-not-trailers": [*_without("te"), ("te", "trailers, deflate")],
    "8.1.2.3-1-empty-path": [*_without(":path")[:2], (":path", ""), *_without(":path")[2:]],
    "8.1.2.3-2-no-method": _without(":method"),
    "8.1.2.3-3-no-scheme": _without(":scheme"),
    "8.1.2.3-4-no-path": _without(":path"),
    "8.1.2.3-5-two-methods": _twice(":method"),
    "8.1.2.3-6-two-schemes": _twice(":scheme"),
    "8.1.2.3-7-two-paths": _twice(":path"),
    "8.1.2.3-two-authorities": _twice(":authority"),
    "8.1.2-header-value-with-newline": [*_BASE, ("x-a", "b\r\nx-b: c")],
    "8.1.2-empty-header-name": [*_BASE, ("", "x")],
}


@pytest.mark.parametrize("fields", MALFORMED.values(), ids=MALFORMED.keys())
def test_http2_8_1_2_malformed_request(conn: H2Raw, fields: list[tuple[str, str]]) -> None:
    conn.send(conn.headers(1, fields), h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    conn.expect_rst(1, h.PROTOCOL_ERROR)
    conn.expect_alive()


def test_http2_8_1_2_1_3_pseudo_header_in_trailers(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.data(1, h.EMPTY_MESSAGE))
    conn.send(conn.headers(1, block=conn.block([(":method", "POST")]), end_stream=True))
    conn.expect_rst(1, h.PROTOCOL_ERROR)


def test_http2_8_1_2_uppercase_name_in_trailers(conn: H2Raw) -> None:
    conn.send(conn.headers(1), h.data(1, h.EMPTY_MESSAGE))
    conn.send(conn.headers(1, block=conn.block([("X-Trailer", "1")]), end_stream=True))
    conn.expect_rst(1, h.PROTOCOL_ERROR)


def test_http2_8_1_2_2_te_trailers_is_allowed(conn: H2Raw) -> None:
    conn.send(conn.call(1))  # request_fields() carries te: trailers
    _ok(conn, 1)


@pytest.mark.parametrize("split", [False, True], ids=["8.1.2.6-1-one-data", "8.1.2.6-2-two-data"])
def test_http2_8_1_2_6_content_length_mismatch(conn: H2Raw, split: bool) -> None:
    conn.send(conn.headers(1, [*_BASE, ("content-length", "1")]))
    if split:
        conn.send(h.data(1, h.EMPTY_MESSAGE[:2]), h.data(1, h.EMPTY_MESSAGE[2:], end_stream=True))
    else:
        conn.send(h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    conn.expect_rst(1, h.PROTOCOL_ERROR)


def test_http2_8_1_2_6_content_length_match(conn: H2Raw) -> None:
    conn.send(conn.headers(1, [*_BASE, ("content-length", "5")]))
    conn.send(h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


def test_http2_8_2_1_push_promise_from_a_client(conn: H2Raw) -> None:
    conn.send(h.frame(h.PUSH_PROMISE, h.END_HEADERS, 1, b"\x00\x00\x00\x02" + conn.block()))
    conn.expect_goaway(h.PROTOCOL_ERROR)


# == hpack ======================================================================================


HPACK_ERRORS = {
    "2.3.3-1-indexed-beyond-table": b"\xff\x7f",
    "2.3.3-2-literal-name-beyond-table": b"\x4f\x7f\x01a",
    "4.2-1-size-update-above-setting": b"\x3f\xe1\x3f",
    "5.2-1-huffman-eos": b"\x00\x85\xff\xff\xff\xff\xff\x01a",
    "5.2-2-huffman-padding-over-7-bits": b"\x00\x82\x1f\xff\x01a",
    "5.2-3-huffman-padding-not-eos": b"\x00\x81\x00\x01a",
    "6.1-1-index-0": b"\x80",
    "6.3-1-size-update-after-a-field": b"\x82\x20",
    "truncated-integer": b"\xff",
    "truncated-string": b"\x00\x05ab",
}


@pytest.mark.parametrize("block", HPACK_ERRORS.values(), ids=HPACK_ERRORS.keys())
def test_hpack_decoding_errors(conn: H2Raw, block: bytes) -> None:
    conn.send(conn.headers(1, block=block, end_stream=True))
    conn.expect_goaway(h.COMPRESSION_ERROR)


def test_hpack_size_update_at_the_start_is_fine(conn: H2Raw) -> None:
    conn.send(conn.headers(1, block=b"\x20" + conn.block()))
    conn.send(h.data(1, h.EMPTY_MESSAGE, end_stream=True))
    _ok(conn, 1)


def test_hpack_header_list_beyond_the_advertised_size(conn: H2Raw) -> None:
    limit = conn.server_settings[h.MAX_HEADER_LIST_SIZE]
    fields = [*_BASE, *[(f"x-{i}", "v" * 1000) for i in range(limit // 1000 + 2)]]
    block = conn.block(fields)
    frame_size = 16384
    parts = [block[i : i + frame_size] for i in range(0, len(block), frame_size)]
    frames = [conn.headers(1, block=parts[0], end_headers=False)]
    for i, part in enumerate(parts[1:], 1):
        frames.append(h.frame(h.CONTINUATION, h.END_HEADERS if i == len(parts) - 1 else 0, 1, part))
    conn.send(*frames)
    got = conn.read()
    while not isinstance(got, (HeadersFrame, RstStreamFrame)) and got.type != h.GOAWAY:
        got = conn.read()
    # too large a header list: refused, as a stream error (431) or a connection error
    if isinstance(got, HeadersFrame):
        assert dict(got.fields)[":status"] == "431"
    elif isinstance(got, RstStreamFrame):
        assert got.error_code in (h.PROTOCOL_ERROR, h.REFUSED_STREAM)
    else:
        assert got.error_code in (h.COMPRESSION_ERROR, h.ENHANCE_YOUR_CALM)
