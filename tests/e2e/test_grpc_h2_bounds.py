"""tidal's HTTP/2 transport under peers that hold resources: one that opens huge flow-control
windows and never reads (write back-pressure), connections that trickle their preface or
header block (the header-read timeout), and more connections than the cap."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as triton_grpc
from onnx import TensorProto
from onnx import helper as oh
from tritonclient.grpc import service_pb2 as pb

from . import h2_raw as h
from .conftest import TidalServer, running_server
from .h2_raw import H2Raw
from .models import save_model, write_text

WIDE = 256 * 1024  # FP32 values: a 1 MiB output from a 4-byte input
INFER = "/inference.GRPCInferenceService/ModelInfer"


def _expand_model() -> onnx.ModelProto:
    shape = oh.make_tensor("shape", TensorProto.INT64, [1], [WIDE])
    graph = oh.make_graph(
        [oh.make_node("Expand", ["X", "shape"], ["Y"])],
        "g",
        [oh.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
        [oh.make_tensor_value_info("Y", TensorProto.FLOAT, [WIDE])],
        [shape],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("h2_bounds_repo")
    save_model(root / "big" / "1" / "model.onnx", _expand_model())
    write_text(
        root / "big" / "config.pbtxt",
        'name: "big"\nbackend: "onnxruntime"\nmax_batch_size: 0\n'
        'input [{ name: "X" data_type: TYPE_FP32 dims: [1] }]\n'
        f'output [{{ name: "Y" data_type: TYPE_FP32 dims: [{WIDE}] }}]\n',
    )
    return root


def _server(repo: Path, *flags: str) -> Iterator[TidalServer]:
    base = ["--grpc-address", "127.0.0.1", "--grpc-transport", "tidal"]
    with running_server(repo, flags=[*base, *flags]) as proc:
        yield proc


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[TidalServer]:
    yield from _server(repo, "--grpc-header-timeout-secs", "1")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _infer_big(client: triton_grpc.InferenceServerClient) -> np.ndarray:
    x = triton_grpc.InferInput("X", [1], "FP32")
    x.set_data_from_numpy(np.array([2.0], dtype=np.float32))
    return client.infer("big", [x]).as_numpy("Y")


def _infer_message() -> bytes:
    request = pb.ModelInferRequest(model_name="big")
    tensor = request.inputs.add()
    tensor.name, tensor.datatype = "X", "FP32"
    tensor.shape.append(1)
    request.raw_input_contents.append(np.array([1.0], dtype=np.float32).tobytes())
    body = request.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


def test_a_peer_that_never_reads_does_not_grow_the_server(server: TidalServer) -> None:
    """Huge windows, 300 calls of 1 MiB answers, nothing read: the server pauses instead of
    buffering 300 MiB, and other clients are still answered."""
    assert server.grpc_port is not None and server.proc.pid
    with triton_grpc.InferenceServerClient(server.grpc_url) as client:
        for _ in range(5):  # warm: the model's and the allocator's first allocations
            assert _infer_big(client).shape == (WIDE,)
        before = _rss_mib(server.proc.pid)
        hog = H2Raw(server.grpc_port, rcvbuf=64 * 1024)
        hog.handshake({h.INITIAL_WINDOW_SIZE: 2**31 - 1, h.MAX_FRAME_SIZE: 2**24 - 1})
        hog.send(h.window_update(0, 2**31 - 1 - 65535))
        fields = h.request_fields(INFER)
        message = _infer_message()
        sid = 1
        for _wave in range(15):  # 15 waves of 20 calls
            frames = []
            for _ in range(20):
                frames.append(hog.headers(sid, fields) + h.data(sid, message, end_stream=True))
                sid += 2
            hog.send(*frames)
            time.sleep(0.05)
        time.sleep(2.0)  # what the server would do with them, it has done
        after = _rss_mib(server.proc.pid)
        assert _infer_big(client).shape == (WIDE,)  # others are still served
        assert client.is_server_live()
        hog.close()
    print(f"RSS {before:.0f} -> {after:.0f} MiB")
    assert after - before < 100, f"RSS {before:.0f} -> {after:.0f} MiB"


def _closed(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (what it sent before is read and dropped)."""
    while select.select([sock], [], [], 0)[0]:
        try:
            if not sock.recv(65536):
                return True
        except OSError:
            return True
    return False


def test_connections_trickling_the_preface_are_closed(server: TidalServer) -> None:
    """200 connections that send their preface a byte at a time are closed after the header
    timeout (1 s here) while a normal client is answered."""
    assert server.grpc_port is not None
    socks = [socket.create_connection(("127.0.0.1", server.grpc_port)) for _ in range(200)]
    start = time.monotonic()
    open_socks = set(socks)
    with triton_grpc.InferenceServerClient(server.grpc_url) as client:
        at = 0
        while open_socks and time.monotonic() - start < 6:
            for sock in list(open_socks):
                if _closed(sock):
                    open_socks.discard(sock)
                elif at < len(h.PREFACE) - 1:
                    try:
                        sock.send(h.PREFACE[at : at + 1])
                    except OSError:
                        open_socks.discard(sock)
            at += 1
            assert client.is_server_live()
            time.sleep(0.1)
        took = time.monotonic() - start
        assert _infer_big(client).shape == (WIDE,)
    for sock in socks:
        sock.close()
    assert not open_socks, f"{len(open_socks)} of 200 still open after {took:.1f} s"
    assert took < 4, took


def test_a_header_block_left_open_is_closed(server: TidalServer) -> None:
    assert server.grpc_port is not None
    c = H2Raw(server.grpc_port, timeout=4.0).handshake()
    idle = H2Raw(server.grpc_port).handshake()
    try:
        block = c.block()
        c.send(c.headers(1, block=block[:3], end_headers=False))
        started = time.monotonic()
        c.expect_goaway(h.ENHANCE_YOUR_CALM)
        assert 0.9 < time.monotonic() - started < 3.0
        idle.expect_alive()  # a connection between calls is not waiting for headers
        idle.send(idle.call(1))
        idle.response(1)
    finally:
        c.close()
        idle.close()


@pytest.fixture(scope="module")
def capped(repo: Path) -> Iterator[TidalServer]:
    yield from _server(repo, "--grpc-max-connections", "4")


def test_connections_over_the_cap_are_closed(capped: TidalServer) -> None:
    assert capped.grpc_port is not None
    held = [H2Raw(capped.grpc_port).handshake() for _ in range(4)]
    extra = H2Raw(capped.grpc_port)
    with pytest.raises(h.Closed):
        extra.read()  # closed on accept, before the server's SETTINGS
    extra.close()
    held.pop().close()
    time.sleep(0.3)
    again = H2Raw(capped.grpc_port).handshake()
    again.send(again.call(1))
    again.response(1)
    again.close()
    for c in held:
        c.expect_alive()
        c.close()


def test_the_aio_transport_gets_the_same_bounds(repo: Path) -> None:
    """grpc.aio: the header timeout as grpc-core's handshake timeout (preface and SETTINGS),
    the cap as its incoming-connection limit."""
    flags = ["--grpc-address", "127.0.0.1", "--grpc-transport", "aio"]
    flags += ["--grpc-header-timeout-secs", "1", "--grpc-max-connections", "2"]
    with running_server(repo, flags=flags) as proc:
        assert proc.grpc_port is not None
        slow = socket.create_connection(("127.0.0.1", proc.grpc_port))
        slow.send(h.PREFACE[:5])
        start = time.monotonic()
        while not _closed(slow) and time.monotonic() - start < 5:
            time.sleep(0.1)
        took = time.monotonic() - start
        slow.close()
        assert took < 3, took
        held = [H2Raw(proc.grpc_port).handshake() for _ in range(2)]
        extra = H2Raw(proc.grpc_port)
        with pytest.raises(h.Closed):
            extra.handshake()
        for c in (*held, extra):
            c.close()
