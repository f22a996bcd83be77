"""tidal's HTTP/2 gRPC transport in-process, driven frame by frame from a raw socket: flow
control both ways, reassembly across frames, resets, deadlines, shutdown, protocol errors."""

from __future__ import annotations

import asyncio

import hpack
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from tidal.config import ServerSettings
from tidal.frontends.grpc.h2 import TidalGrpcService
from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.messages import frame
from tidal.server import InferenceServer

INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"
LIVE = "/inference.GRPCInferenceService/ServerLive"


_OPEN: list[Peer] = []  # closed after each test


class Peer:
    """A raw HTTP/2 client: frames out, frames in, headers through ``hpack``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()

    @classmethod
    async def connect(cls, port: int, settings: dict[int, int] | None = None) -> Peer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        peer = cls(reader, writer)
        _OPEN.append(peer)
        peer.send(f.PREFACE + f.settings(settings or {}))
        return peer

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def headers(self, sid: int, path: str, end_stream: bool = False, **extra: str) -> bytes:
        fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", "x"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *extra.items(),
        ]
        return f.headers(sid, self.encoder.encode(fields), end_stream, 16384)

    async def frame(self, timeout: float = 5.0) -> tuple[int, int, int, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(9), timeout)
        high, low, kind, flags, sid = f.HEAD.unpack(head)
        payload = await asyncio.wait_for(self.reader.readexactly(high << 8 | low), timeout)
        return kind, flags, sid & 0x7FFFFFFF, payload

    async def response(self, sid: int) -> tuple[list, bytes, list, list[int]]:
        """(headers, DATA bytes, trailers, DATA frame sizes) of stream ``sid``; other frames
        are answered or skipped."""
        headers: list = []
        data = b""
        sizes = []
        while True:
            kind, flags, stream, payload = await self.frame()
            if kind == f.HEADERS and stream == sid:
                fields = self.decoder.decode(payload)
                if flags & f.END_STREAM:
                    return headers, data, fields, sizes
                headers = fields
            elif kind == f.DATA and stream == sid:
                data += payload
                sizes.append(len(payload))
            elif kind == f.HEADERS:  # another stream's: decoded all the same (HPACK state)
                self.decoder.decode(payload)
            elif kind == f.RST_STREAM and stream == sid:
                raise AssertionError(f"stream reset with {f.u32(payload)}")

    async def goaway(self) -> int:
        """The error code of the GOAWAY that must come before the connection closes."""
        while True:
            kind, _flags, _sid, payload = await self.frame()
            if kind == f.GOAWAY:
                return f.u32(payload[4:8])

    async def closed(self) -> bool:
        try:
            return await asyncio.wait_for(self.reader.read(), 5) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


def _request(width: int, value: float = 1.0, model: str = "ident") -> pb.ModelInferRequest:
    data = np.full((1, width), value, dtype=np.float32)
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, width])],
        raw_input_contents=[data.tobytes()],
    )


def _status(trailers: list) -> tuple[str, str]:
    fields = dict(trailers)
    return fields.get("grpc-status", ""), fields.get("grpc-message", "")


def _output(data: bytes) -> np.ndarray:
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == len(data) - 5
    response = pb.ModelInferResponse.FromString(data[5:])
    return np.frombuffer(response.raw_output_contents[0], np.float32)


def serving(repo, body, **service_options):
    async def main():
        server = InferenceServer(ServerSettings(), [repo])
        assert await server.start() == []
        service = await TidalGrpcService.start(server, "127.0.0.1", 0, **service_options)
        try:
            return await body(service)
        finally:
            while _OPEN:
                writer = _OPEN.pop().writer
                writer.close()
                await asyncio.wait([asyncio.ensure_future(writer.wait_closed())], timeout=1)
            await service.shutdown(timeout=1)
            await server.stop()

    return asyncio.run(main())


def test_preface_settings_ping_and_a_unary_call(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        kind, flags, _, payload = await peer.frame()  # the server's SETTINGS come first
        assert kind == f.SETTINGS and not flags & f.ACK
        advertised = dict(f.parse_settings(payload))
        assert advertised[f.INITIAL_WINDOW_SIZE] > f.DEFAULT_WINDOW
        peer.send(f.SETTINGS_ACK + f.head(8, f.PING, 0, 0) + b"pingpong")
        seen = set()
        while {"settings-ack", "pong", "window"} - seen:
            kind, flags, sid, payload = await peer.frame()
            if kind == f.SETTINGS and flags & f.ACK:
                seen.add("settings-ack")
            elif kind == f.PING:
                assert flags & f.ACK and payload == b"pingpong"
                seen.add("pong")
            elif kind == f.WINDOW_UPDATE and sid == 0:
                seen.add("window")
        message = frame(_request(3, 2.5).SerializeToString())
        peer.send(peer.headers(1, INFER) + f.head(len(message), f.DATA, f.END_STREAM, 1) + message)
        headers, data, trailers, _ = await peer.response(1)
        assert (":status", "200") in headers
        assert _status(trailers) == ("0", "")
        np.testing.assert_array_equal(_output(data), [2.5, 2.5, 2.5])
        peer.close()

    serving(ident_repo, body)


def test_a_request_split_across_continuation_padding_and_frames(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", INFER),
            (":authority", "x"),
            ("content-type", "application/grpc"),
            ("x-filler", "z" * 100),
        ]
        block = peer.encoder.encode(fields)
        # HEADERS (padded, with priority) + two CONTINUATIONs
        first, second, third = block[:10], block[10:50], block[50:]
        padded = bytes([3]) + b"\x00\x00\x00\x00\x10" + first + b"\x00" * 3
        peer.send(f.head(len(padded), f.HEADERS, f.PADDED | f.PRIORITY_FLAG, 1) + padded)
        peer.send(f.head(len(second), f.CONTINUATION, 0, 1) + second)
        peer.send(f.head(len(third), f.CONTINUATION, f.END_HEADERS, 1) + third)
        message = frame(_request(1000, 7.0).SerializeToString())
        for at in range(0, len(message), 333):  # the message over many DATA frames
            piece = message[at : at + 333]
            data = bytes([2]) + piece + b"\x00\x00"  # padded
            last = at + 333 >= len(message)
            flags = f.PADDED | (f.END_STREAM if last else 0)
            peer.send(f.head(len(data), f.DATA, flags, 1) + data)
        _, data, trailers, _ = await peer.response(1)
        assert _status(trailers) == ("0", "")
        np.testing.assert_array_equal(_output(data), np.full(1000, 7.0, np.float32))
        peer.close()

    serving(ident_repo, body)


def test_a_response_larger_than_the_window_waits_for_window_update(ident_repo):
    async def body(service):
        # The client's stream window is 1,000 bytes: the 40 KB response must wait for it.
        peer = await Peer.connect(service.port, {f.INITIAL_WINDOW_SIZE: 1000})
        message = frame(_request(10_000, 1.5).SerializeToString())
        peer.send(peer.headers(1, INFER) + f.head(len(message), f.DATA, f.END_STREAM, 1) + message)
        first = b""
        while len(first) < 1000:
            kind, _, _, payload = await peer.frame()
            if kind == f.DATA:
                first += payload
        assert len(first) == 1000
        with pytest.raises(asyncio.TimeoutError):  # blocked: nothing more comes
            while True:
                kind, *_ = await peer.frame(timeout=0.3)
                assert kind != f.DATA
        peer.send(f.window_update(1, 100_000))
        _, data, trailers, sizes = await peer.response(1)
        assert _status(trailers) == ("0", "")
        assert max(sizes) <= f.DEFAULT_MAX_FRAME  # the client's frame size limit holds
        np.testing.assert_array_equal(_output(first + data), np.full(10_000, 1.5, np.float32))
        peer.close()

    serving(ident_repo, body)


def test_a_response_waits_for_the_connection_window_too(ident_repo):
    async def body(service):
        # Stream windows of 1 MiB: only the connection's window (65,535) holds the response.
        peer = await Peer.connect(service.port, {f.INITIAL_WINDOW_SIZE: 1 << 20})
        payload = _request(40_000, 3.0).SerializeToString()  # 160 KB each way
        message = frame(payload)
        peer.send(peer.headers(1, INFER))
        for at in range(0, len(message), 16384):
            piece = message[at : at + 16384]
            flags = f.END_STREAM if at + 16384 >= len(message) else 0
            peer.send(f.head(len(piece), f.DATA, flags, 1) + piece)
        got = 0
        while got < f.DEFAULT_WINDOW:  # exactly the default connection window, then a stop
            kind, _, _, chunk = await peer.frame()
            if kind == f.DATA:
                got += len(chunk)
        assert got == f.DEFAULT_WINDOW
        peer.send(f.window_update(0, 10_000_000))
        _, data, trailers, _ = await peer.response(1)
        assert _status(trailers) == ("0", "")
        assert got + len(data) > len(message)
        peer.close()

    serving(ident_repo, body)


def test_unknown_method_bad_content_type_and_auth(ident_repo, tmp_path):
    from tidal.security.auth import BearerAuth
    from tidal.security.keys import KeyHashes

    auth = BearerAuth(KeyHashes.of("secret-key-1", "secret-key-2"))

    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(peer.headers(1, "/inference.GRPCInferenceService/Nope", True))
        _, _, trailers, _ = await peer.response(1)
        assert _status(trailers)[0] == "12"
        peer.send(peer.headers(3, INFER, True))  # no key
        _, _, trailers, _ = await peer.response(3)
        assert _status(trailers)[0] == "16"
        peer.send(peer.headers(5, LIVE, True))  # health is open
        message = frame(b"")
        peer.send(peer.headers(7, LIVE) + f.head(5, f.DATA, f.END_STREAM, 7) + message)
        _, data, trailers, _ = await peer.response(7)
        assert _status(trailers) == ("0", "")
        assert pb.ServerLiveResponse.FromString(data[5:]).live
        message = frame(_request(2).SerializeToString())
        peer.send(
            peer.headers(9, INFER, authorization="Bearer secret-key-2")
            + f.head(len(message), f.DATA, f.END_STREAM, 9)
            + message
        )
        _, data, trailers, _ = await peer.response(9)
        assert _status(trailers) == ("0", "")
        fields = [(":method", "POST"), (":scheme", "http"), (":path", INFER), (":authority", "x")]
        peer.send(
            f.headers(
                11, peer.encoder.encode([*fields, ("content-type", "text/plain")]), True, 16384
            )
        )
        kind, _, sid, payload = await peer.frame()
        while sid != 11:
            if kind == f.HEADERS:
                peer.decoder.decode(payload)
            kind, _, sid, payload = await peer.frame()
        assert peer.decoder.decode(payload) == [(":status", "415")]
        peer.close()

    serving(ident_repo, body, auth=auth)


def test_rst_stream_cancels_the_call_and_the_connection_goes_on(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(peer.headers(1, STREAM))  # a stream that waits for requests
        await asyncio.sleep(0.1)
        (connection,) = service.connections
        (task,) = connection.tasks
        peer.send(f.rst_stream(1, f.CANCEL))
        await asyncio.sleep(0.1)
        assert task.done() and not connection.tasks
        message = frame(_request(2).SerializeToString())
        peer.send(peer.headers(3, INFER) + f.head(len(message), f.DATA, f.END_STREAM, 3) + message)
        _, _, trailers, _ = await peer.response(3)
        assert _status(trailers) == ("0", "")
        peer.close()

    serving(ident_repo, body)


def test_bidirectional_stream_and_its_deadline(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(peer.headers(1, STREAM))
        out = b"".join(
            frame(_request(2, float(i)).SerializeToString()) for i in range(3)
        )  # three requests in one DATA frame
        peer.send(f.head(len(out), f.DATA, f.END_STREAM, 1) + out)
        _, data, trailers, _ = await peer.response(1)
        assert _status(trailers) == ("0", "")
        values = set()
        at = 0
        while at < len(data):
            size = int.from_bytes(data[at + 1 : at + 5], "big")
            response = pb.ModelStreamInferResponse.FromString(data[at + 5 : at + 5 + size])
            assert not response.error_message
            values.add(np.frombuffer(response.infer_response.raw_output_contents[0], "f4")[0])
            at += 5 + size
        assert values == {0.0, 1.0, 2.0}
        # a stream that never ends its requests, with a 100 ms deadline
        peer.send(peer.headers(3, STREAM, **{"grpc-timeout": "100m"}))
        _, _, trailers, _ = await peer.response(3)
        assert _status(trailers)[0] == "4"
        peer.close()

    serving(ident_repo, body)


def test_shutdown_sends_goaway_and_lets_the_call_in_flight_finish(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(peer.headers(1, INFER))  # the request has not ended yet
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(service.shutdown(timeout=5))
        assert await peer.goaway() == f.NO_ERROR
        message = frame(_request(2, 4.0).SerializeToString())
        peer.send(f.head(len(message), f.DATA, f.END_STREAM, 1) + message)
        peer.send(peer.headers(3, LIVE, True))  # after GOAWAY: refused
        seen = []
        data = b""
        while True:  # every frame until the server closes the connection
            try:
                kind, flags, sid, payload = await peer.frame()
            except asyncio.IncompleteReadError:
                break
            if kind == f.DATA:
                data += payload
            elif kind == f.RST_STREAM:
                seen.append(("reset", sid, f.u32(payload)))
            elif kind == f.HEADERS and flags & f.END_STREAM:
                seen.append(("end", sid, _status(peer.decoder.decode(payload))[0]))
            elif kind == f.HEADERS:
                peer.decoder.decode(payload)
        assert ("reset", 3, f.REFUSED_STREAM) in seen
        assert ("end", 1, "0") in seen
        np.testing.assert_array_equal(_output(data), [4.0, 4.0])
        await stopping

    serving(ident_repo, body)


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (f.head(4, f.DATA, 0, 0) + b"abcd", f.PROTOCOL_ERROR),  # DATA on stream 0
        (f.head(4, f.DATA, 0, 9) + b"abcd", f.PROTOCOL_ERROR),  # DATA on an idle stream
        (f.head(3, f.PING, 0, 0) + b"abc", f.FRAME_SIZE_ERROR),
        (f.head(5, f.SETTINGS, 0, 0) + b"abcde", f.FRAME_SIZE_ERROR),
        (f.settings({f.MAX_FRAME_SIZE: 100}), f.PROTOCOL_ERROR),
        (f.settings({f.INITIAL_WINDOW_SIZE: 2**31}), f.FLOW_CONTROL_ERROR),
        (f.window_update(0, 0), f.PROTOCOL_ERROR),
        (f.window_update(0, 2**31 - 1), f.FLOW_CONTROL_ERROR),
        (f.head(0, f.CONTINUATION, f.END_HEADERS, 1), f.PROTOCOL_ERROR),
        (f.head(3, f.HEADERS, f.END_HEADERS, 2) + b"\x82\x84\x86", f.PROTOCOL_ERROR),  # even id
        (f.head(1, f.HEADERS, f.END_HEADERS, 1) + b"\xff", f.COMPRESSION_ERROR),
        (f.rst_stream(0, 0), f.PROTOCOL_ERROR),
        (f.head(4, f.PUSH_PROMISE, 0, 1) + b"\x00\x00\x00\x02", f.PROTOCOL_ERROR),
        (f.head(5 * 1024 * 1024, f.DATA, 0, 1), f.FRAME_SIZE_ERROR),
    ],
    ids=lambda value: None if isinstance(value, bytes) else str(value),
)
def test_protocol_violations_get_goaway_and_close(ident_repo, frames, code):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(frames)
        assert await peer.goaway() == code
        assert await peer.closed()
        # the server goes on
        other = await Peer.connect(service.port)
        other.send(other.headers(1, LIVE) + f.head(5, f.DATA, f.END_STREAM, 1) + frame(b""))
        _, _, trailers, _ = await other.response(1)
        assert _status(trailers) == ("0", "")
        other.close()

    serving(ident_repo, body)


def test_receive_windows_are_replenished_as_data_arrives(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(peer.headers(1, INFER))
        size = 4 * 1024 * 1024
        chunk = b"\x00" + (100 * size).to_bytes(4, "big") + b"\x00" * (size - 5)
        for _ in range(5):  # 20 MiB of one message, more than the 16 MiB stream window
            peer.send(f.head(len(chunk), f.DATA, 0, 1) + chunk)
            chunk = b"\x00" * size
        granted = 0
        while granted < 2 * size:  # the server grants more as it takes the data
            kind, _, sid, payload = await peer.frame()
            assert kind != f.RST_STREAM and kind != f.GOAWAY
            if kind == f.WINDOW_UPDATE and sid == 1:
                granted += f.u32(payload)
        peer.send(f.rst_stream(1, f.CANCEL))
        peer.send(peer.headers(3, LIVE) + f.head(5, f.DATA, f.END_STREAM, 3) + frame(b""))
        _, _, trailers, _ = await peer.response(3)
        assert _status(trailers) == ("0", "")

    serving(ident_repo, body)


def test_a_bad_preface_gets_goaway_and_a_close(ident_repo):
    async def body(service):
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)  # everything, up to the close
        frames = []
        at = 0
        while at + 9 <= len(data):
            high, low, kind, _, _ = f.HEAD.unpack_from(data, at)
            frames.append((kind, data[at + 9 : at + 9 + (high << 8 | low)]))
            at += 9 + (high << 8 | low)
        assert frames[0][0] == f.SETTINGS and frames[-1][0] == f.GOAWAY
        assert f.u32(frames[-1][1][4:8]) == f.PROTOCOL_ERROR
        writer.close()
        await writer.wait_closed()

    serving(ident_repo, body)
