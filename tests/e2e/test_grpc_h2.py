"""tidal's own HTTP/2 gRPC transport (the default ``--grpc-transport tidal``) end to end:
flow control on large tensors, gzip, many calls on one channel, cancellation, protocol
garbage on a raw socket; and ``--grpc-transport aio`` still serving."""

from __future__ import annotations

import asyncio
import queue
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from .conftest import TidalServer, running_server
from .scheduling_models import _add, identity_fp32

MAX_MESSAGE = 2**31 - 1
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
GOAWAY = 0x7


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("h2_repo")
    _add(root, "wide", identity_fp32("W"), "max_batch_size: 4\n")
    # Requests wait up to 1.5 s for a batch: long enough to cancel one while it is queued.
    _add(
        root,
        "queued",
        identity_fp32(4),
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1500000 }\n",
    )
    return root


@pytest.fixture(scope="module")
def h2_server(repo: Path) -> Iterator[TidalServer]:
    flags = ["--grpc-address", "127.0.0.1", "--grpc-transport", "tidal"]
    with running_server(repo, flags=flags) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(h2_server: TidalServer) -> Iterator[triton_grpc.InferenceServerClient]:
    with triton_grpc.InferenceServerClient(h2_server.grpc_url) as grpc_client:
        yield grpc_client


def _wide(width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, width)).astype(np.float32)


def _infer_wide(
    client: triton_grpc.InferenceServerClient, data: np.ndarray, **kwargs: object
) -> np.ndarray:
    tensor = triton_grpc.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer("wide", [tensor], **kwargs)
    return result.as_numpy("OUTPUT0")


@pytest.mark.parametrize("size", [100 * 1024, 5 * 1024 * 1024, 40 * 1024 * 1024])
def test_large_tensors_both_directions(client, size):
    """Beyond 64 KiB the response outgrows the client's first window and the server waits
    for WINDOW_UPDATE; beyond 16 MiB the request outgrows the server's stream window."""
    data = _wide(size // 4, seed=size)
    np.testing.assert_array_equal(_infer_wide(client, data), data)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(client, algorithm):
    data = np.tile(np.arange(1024, dtype=np.float32), (1, 64))  # compressible, 256 KiB
    np.testing.assert_array_equal(_infer_wide(client, data, compression_algorithm=algorithm), data)


def test_many_concurrent_calls_on_one_channel(h2_server):
    async def main() -> None:
        async with triton_grpc_aio.InferenceServerClient(h2_server.grpc_url) as aio_client:

            async def one(i: int) -> None:
                data = np.full((1, 8), float(i), np.float32)
                tensor = triton_grpc_aio.InferInput("INPUT0", [1, 8], "FP32")
                tensor.set_data_from_numpy(data)
                result = await aio_client.infer("wide", [tensor], request_id=str(i))
                assert result.get_response().id == str(i)
                np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)

            await asyncio.gather(*(one(i) for i in range(200)))

    asyncio.run(main())


def _queued_count(client: triton_grpc.InferenceServerClient) -> int:
    return client.get_inference_statistics("queued").model_stats[0].inference_count


def test_a_cancelled_call_leaves_the_queue(h2_server, client):
    before = _queued_count(client)
    request = pb.ModelInferRequest(
        model_name="queued",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[1, 4])
        ],
        raw_input_contents=[np.ones((1, 4), np.float32).tobytes()],
    )
    with grpc.insecure_channel(h2_server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        call = stub.ModelInfer.future(request)
        time.sleep(0.3)  # the request now waits in the batcher's queue
        assert call.cancel()
        time.sleep(1.6)  # past the queue delay: had it stayed queued, it would have run
        assert _queued_count(client) == before
        # the same channel, and the server, go on serving; a call not cancelled is counted
        stub.ModelInfer(request, timeout=10)
        assert _queued_count(client) == before + 1


def test_deadline_exceeded(h2_server):
    request = pb.ModelInferRequest(
        model_name="queued",
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[1, 4])
        ],
        raw_input_contents=[np.ones((1, 4), np.float32).tobytes()],
    )
    with grpc.insecure_channel(h2_server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.ModelInfer(request, timeout=0.2)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_unknown_method_is_unimplemented(h2_server):
    with grpc.insecure_channel(h2_server.grpc_url) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/NoSuchRpc")
        with pytest.raises(grpc.RpcError) as failed:
            call(b"")
        assert failed.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "NoSuchRpc" in (failed.value.details() or "")


def test_malformed_request_message_is_an_error(h2_server):
    with grpc.insecure_channel(h2_server.grpc_url) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as failed:
            call(b"\xff\xff\xff\xff")
        assert failed.value.code() == grpc.StatusCode.INTERNAL


def _read_until_closed(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    received = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


def _frame_types(data: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of every frame in DATA."""
    frames = []
    at = 0
    while at + 9 <= len(data):
        high, low, kind, _flags, _sid = struct.unpack_from(">HBBBI", data, at)
        length = high << 8 | low
        frames.append((kind, data[at + 9 : at + 9 + length]))
        at += 9 + length
    return frames


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # HTTP/1.1 on the gRPC port
        PREFACE + b"\x00\x00\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 4,  # DATA before SETTINGS
        PREFACE
        + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        + b"\x00\x00\x05\x01\x05\x00\x00\x00\x01"
        + b"\xff" * 5,  # a header block that is not HPACK
        PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + b"\xff\xff\xff\x00\x00\x00\x00\x00\x00",
    ],
    ids=["http1", "data-before-settings", "bad-hpack", "oversize-frame"],
)
def test_protocol_garbage_gets_goaway_and_the_server_keeps_serving(h2_server, client, garbage):
    host, port = h2_server.grpc_url.split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(garbage)
        received = _read_until_closed(sock)
    kinds = [kind for kind, _ in _frame_types(received)]
    assert kinds[-1] == GOAWAY, kinds
    error_code = struct.unpack(">I", _frame_types(received)[-1][1][4:8])[0]
    assert error_code != 0
    assert client.is_server_live()
    np.testing.assert_array_equal(_infer_wide(client, _wide(16)), _wide(16))
    assert "Traceback" not in h2_server.stderr


def test_aio_transport_still_serves(repo):
    flags = ["--grpc-address", "127.0.0.1", "--grpc-transport", "aio"]
    with (
        running_server(repo, flags=flags) as proc,
        triton_grpc.InferenceServerClient(proc.grpc_url) as aio_served,
    ):
        assert aio_served.is_server_ready()
        data = _wide(300_000)  # 1.2 MiB each way
        np.testing.assert_array_equal(_infer_wide(aio_served, data), data)
    assert "gRPC transport: aio" in proc.stderr


def test_large_tensors_on_a_stream(client):
    """Stream responses beyond the client's window wait for it, one stream at a time."""
    responses: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        sent = {}
        for i in range(3):
            data = _wide(5 * 1024 * 1024 // 4, seed=i)
            tensor = triton_grpc.InferInput("INPUT0", list(data.shape), "FP32")
            tensor.set_data_from_numpy(data)
            client.async_stream_infer("wide", [tensor], request_id=str(i))
            sent[str(i)] = data
        for _ in range(3):
            result, error = responses.get(timeout=30)
            assert error is None, error
            request_id = result.get_response().id
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), sent.pop(request_id))
    finally:
        client.stop_stream()
    assert not sent
