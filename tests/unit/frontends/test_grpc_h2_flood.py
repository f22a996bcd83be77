"""The rapid-reset guard (CVE-2023-44487) of tidal's HTTP/2 gRPC transport: a client that
resets (or gets refused, or provokes resets of) streams too fast gets GOAWAY ENHANCE_YOUR_CALM,
its calls already running may finish, and it is closed; legitimate cancelling never trips it."""

from __future__ import annotations

import asyncio

import numpy as np
from tritonclient.grpc import InferInput
from tritonclient.grpc import aio as grpcclient_aio
from tritonclient.grpc import service_pb2 as pb

from tidal.frontends.grpc.h2 import Keepalive
from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2 import receiving as h2_receiving
from tidal.frontends.grpc.h2.limits import RESET_BURST
from tidal.frontends.grpc.h2.messages import frame

from .test_grpc_h2_connection import INFER, LIVE, STREAM, Peer, _request, _status, serving

EMPTY = frame(b"")  # ServerLive's request: an empty message


def _call_and_reset(peer: Peer, sid: int) -> bytes:
    """A whole call (headers, request, end) reset at once: the rapid-reset pattern."""
    return (
        peer.headers(sid, LIVE)
        + f.head(len(EMPTY), f.DATA, f.END_STREAM, sid)
        + EMPTY
        + f.rst_stream(sid, f.CANCEL)
    )


async def _goaway(peer: Peer) -> tuple[int, int, bytes]:
    """(last stream id, error code, debug data) of the next GOAWAY; other frames skipped."""
    while True:
        kind, _flags, _sid, payload = await peer.frame()
        if kind == f.GOAWAY:
            return f.u32(payload[:4]), f.u32(payload[4:8]), payload[8:]
        if kind == f.HEADERS:
            peer.decoder.decode(payload)  # keep the HPACK table in step


async def _unary(peer: Peer, sid: int) -> None:
    message = frame(_request(2).SerializeToString())
    peer.send(peer.headers(sid, INFER) + f.head(len(message), f.DATA, f.END_STREAM, sid) + message)
    _, _, trailers, _ = await peer.response(sid)
    assert _status(trailers) == ("0", "")


def test_a_rapid_reset_flood_gets_goaway_enhance_your_calm(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        count = RESET_BURST + 200
        peer.send(b"".join(_call_and_reset(peer, 2 * n + 1) for n in range(count)))
        last_id, code, debug = await _goaway(peer)
        assert code == f.ENHANCE_YOUR_CALM and b"reset" in debug
        assert last_id <= 2 * count - 1
        assert await peer.closed()
        # the server is fine: another connection is served
        other = await Peer.connect(service.port)
        await _unary(other, 1)
        other.close()

    serving(ident_repo, body)


def test_calls_running_at_the_goaway_may_finish(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(peer.headers(1, STREAM))  # a call running before the flood
        peer.send(b"".join(_call_and_reset(peer, 2 * n + 3) for n in range(RESET_BURST + 50)))
        last_id, code, _ = await _goaway(peer)
        assert code == f.ENHANCE_YOUR_CALM
        peer.send(peer.headers(last_id + 2, LIVE, end_stream=True))  # refused by the GOAWAY
        message = frame(_request(3, 4.0).SerializeToString())
        peer.send(f.head(len(message), f.DATA, f.END_STREAM, 1) + message)
        _, data, trailers, _ = await peer.response(1)
        assert _status(trailers) == ("0", "")
        response = pb.ModelStreamInferResponse.FromString(data[5:])
        output = np.frombuffer(response.infer_response.raw_output_contents[0], np.float32)
        np.testing.assert_array_equal(output, [4.0, 4.0, 4.0])
        assert await peer.closed()  # its last call done: the connection closes

    serving(ident_repo, body)


def test_refused_streams_count_too(ident_repo, monkeypatch):
    monkeypatch.setattr(h2_receiving, "MAX_STREAMS", 2)

    async def body(service):
        peer = await Peer.connect(service.port)
        # two calls that stay open, then streams that are refused, never reset by the client
        frames = [peer.headers(2 * n + 1, STREAM) for n in range(RESET_BURST + 100)]
        peer.send(b"".join(frames))
        _, code, _ = await _goaway(peer)
        assert code == f.ENHANCE_YOUR_CALM

    serving(ident_repo, body)


def test_streams_reset_for_the_clients_errors_count_too(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        bad = []  # WINDOW_UPDATE of 0 on a stream: the server must reset it (RFC 9113 6.9)
        for n in range(RESET_BURST + 100):
            sid = 2 * n + 1
            bad.append(peer.headers(sid, STREAM) + f.head(4, f.WINDOW_UPDATE, 0, sid) + bytes(4))
        peer.send(b"".join(bad))
        _, code, _ = await _goaway(peer)
        assert code == f.ENHANCE_YOUR_CALM

    serving(ident_repo, body)


def test_cancelling_many_calls_at_once_is_allowed(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        # every call a client may have open, cancelled together (a channel closed mid-flight)
        count = RESET_BURST - 10
        peer.send(b"".join(peer.headers(2 * n + 1, STREAM) for n in range(count)))
        peer.send(b"".join(f.rst_stream(2 * n + 1, f.CANCEL) for n in range(count)))
        await _unary(peer, 2 * count + 1)
        (connection,) = service.connections
        assert not connection.tasks
        peer.close()

    serving(ident_repo, body)


def test_a_steady_trickle_of_cancelled_calls_is_allowed(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        sid = 1
        # most of the burst at once, then 150 a second (under the refill rate): past the burst
        for count in (RESET_BURST - 100, *(15,) * 12):
            peer.send(b"".join(_call_and_reset(peer, sid + 2 * n) for n in range(count)))
            sid += 2 * count
            await asyncio.sleep(0.1)
        await _unary(peer, sid)
        (connection,) = service.connections
        assert not connection._calmed
        peer.close()

    # a 400 ms keepalive timeout makes the upkeep tick (and the refill) every 0.1 s
    serving(ident_repo, body, keepalive=Keepalive(timeout_ms=400))


def test_two_hundred_concurrent_tritonclient_calls_on_one_channel(ident_repo):
    async def body(service):
        client = grpcclient_aio.InferenceServerClient(f"127.0.0.1:{service.port}")
        try:

            async def one(i: int) -> np.ndarray:
                x = InferInput("x", [1, 4], "FP32")
                x.set_data_from_numpy(np.full((1, 4), i, np.float32))
                result = await client.infer("ident", [x])
                return result.as_numpy("y")

            for _ in range(3):
                outputs = await asyncio.gather(*(one(i) for i in range(200)))
                for i, y in enumerate(outputs):
                    np.testing.assert_array_equal(y, np.full((1, 4), i, np.float32))
            # cancelling a few calls: no GOAWAY either
            calls = [asyncio.ensure_future(one(i)) for i in range(20)]
            await asyncio.sleep(0)
            for call in calls[:10]:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
            assert (await one(7))[0, 0] == 7
            (connection,) = service.connections
            assert not connection._calmed
        finally:
            await client.close()

    serving(ident_repo, body)


def test_a_later_goaway_never_names_a_higher_stream(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(peer.headers(1, STREAM))  # a call keeps the connection open after the GOAWAY
        peer.send(b"".join(_call_and_reset(peer, 2 * n + 3) for n in range(RESET_BURST + 50)))
        first, code, _ = await _goaway(peer)
        assert code == f.ENHANCE_YOUR_CALM
        peer.send(peer.headers(first + 2, LIVE, end_stream=True))  # ignored: after the GOAWAY
        peer.send(f.head(8, f.PING, 0, 1) + bytes(8))  # a connection error: PING on a stream
        second, code, _ = await _goaway(peer)
        assert code == f.PROTOCOL_ERROR
        assert second <= first

    serving(ident_repo, body)
