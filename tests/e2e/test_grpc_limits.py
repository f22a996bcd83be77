"""The gRPC message cap (``--grpc-max-message-size``, 64 MiB by default) on both transports:
a message over it, as sent or once inflated, is RESOURCE_EXHAUSTED at once, with nothing
inflated past the cap and the server still serving.

The gzip bomb goes through the ``h2`` package's HTTP/2 client with a hand-made gRPC message,
as no gRPC client sends a message it did not compress itself."""

from __future__ import annotations

import socket
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from .conftest import TidalServer, running_server
from .scheduling_models import _add, identity_fp32

MODEL = "wide"
INFER = "/inference.GRPCInferenceService/ModelInfer"
LIVE = "/inference.GRPCInferenceService/ServerLive"
RESOURCE_EXHAUSTED = "8"
DEFAULT_CAP = 64 * 1024 * 1024
RSS_BOUND = 300 * 1024 * 1024  # far below the 1 GiB the bomb inflates to


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits_repo")
    _add(root, MODEL, identity_fp32("W"), "max_batch_size: 0\n")  # dims [-1, -1]
    return root


@pytest.fixture(scope="module")
def limits_server(repo: Path, grpc_transport: str) -> Iterator[TidalServer]:
    """A server with the default cap, of its own: its peak RSS is this module's alone."""
    flags = ["--grpc-address", "127.0.0.1", "--grpc-transport", grpc_transport]
    with running_server(repo, flags=flags) as proc:
        yield proc


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """1 GiB of zeros, gzipped: about 1 MB on the wire. After a full flush the deflate state
    starts afresh, so each MiB compresses to the same bytes: one is made and repeated."""
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    mib = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(1024):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + mib * 1024 + deflate.flush() + struct.pack("<II", crc, (1 << 30) & 0xFFFFFFFF)


def _kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def raw_call(
    port: int,
    path: str,
    body: bytes,
    *,
    encoding: str | None = None,
    end_stream: bool = True,
    timeout: float = 10.0,
) -> tuple[str | None, str | None]:
    """One gRPC call whose DATA is ``body`` as given (prefix included); stops sending once the
    server answers. Returns (grpc-status, grpc-message); (None, None) on a timeout."""
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config)
    conn.initiate_connection()
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    if encoding is not None:
        fields.append(("grpc-encoding", encoding))
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, fields)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(conn.data_to_send())
        while True:
            sent = _send_what_fits(conn, sock, sid, body, sent, end_stream)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return None, None
            if not data:
                raise AssertionError("the server closed the connection without an answer")
            status = _grpc_status(conn.receive_data(data))
            if status is not None:
                return status
            sock.sendall(conn.data_to_send())


def _send_what_fits(
    conn: h2.connection.H2Connection,
    sock: socket.socket,
    sid: int,
    body: bytes,
    sent: int,
    end_stream: bool,
) -> int:
    """Send as much of ``body`` past ``sent`` as the server's windows allow; the new offset."""
    while sent < len(body):
        size = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
        if size <= 0:
            break
        chunk = body[sent : sent + size]
        sent += len(chunk)
        conn.send_data(sid, chunk, end_stream=end_stream and sent == len(body))
        sock.sendall(conn.data_to_send())
    return sent


def _grpc_status(events: list) -> tuple[str, str | None] | None:
    """The (grpc-status, grpc-message) among ``events``, if the server sent one."""
    for event in events:
        if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
            got = dict(event.headers)
            if "grpc-status" in got:
                return got["grpc-status"], got.get("grpc-message")
        elif isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
            raise AssertionError(f"no gRPC status, the server sent {event}")
    return None


def _assert_still_serving(server: TidalServer) -> None:
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    tensor = triton_grpc.InferInput("INPUT0", [1, 4], "FP32").set_data_from_numpy(data)
    with triton_grpc.InferenceServerClient(server.grpc_url) as client:
        assert client.is_server_live()
        result = client.infer(MODEL, [tensor])
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def _assert_refused(status: str | None, message: str | None) -> None:
    assert status == RESOURCE_EXHAUSTED, (status, message)
    assert message is not None and "larger than max" in message.lower(), message


def test_a_gzip_bomb_is_refused_before_it_inflates(limits_server, gzip_bomb):
    pid = limits_server.proc.pid
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM from here on
    before = _kib(pid, "VmRSS")
    started = time.monotonic()
    message = b"\x01" + len(gzip_bomb).to_bytes(4, "big") + gzip_bomb
    status, text = raw_call(limits_server.grpc_port, INFER, message, encoding="gzip")
    elapsed = time.monotonic() - started
    _assert_refused(status, text)
    grown = _kib(pid, "VmHWM") - before
    assert grown < RSS_BOUND, f"the server's RSS grew by {grown >> 20} MiB"
    assert elapsed < 5, f"answered after {elapsed:.1f} s"
    _assert_still_serving(limits_server)


def test_a_declared_size_over_the_cap_is_refused_before_the_body(limits_server):
    prefix = b"\x00" + (100 * 1024 * 1024).to_bytes(4, "big")  # and not one byte of the body
    status, text = raw_call(limits_server.grpc_port, INFER, prefix, end_stream=False)
    _assert_refused(status, text)
    _assert_still_serving(limits_server)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_tritonclient_tensor_over_the_cap(limits_server, compression):
    """A real client's request of 64 MiB and more: its raw tensor alone is over the cap (gzip:
    a few hundred KiB on the wire that inflate past it)."""
    data = np.zeros((1, DEFAULT_CAP // 4 + 1), np.float32)
    tensor = triton_grpc.InferInput("INPUT0", [1, data.size], "FP32").set_data_from_numpy(data)
    client = triton_grpc.InferenceServerClient(limits_server.grpc_url)
    with client, pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, [tensor], compression_algorithm=compression, client_timeout=30)
    assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED", refused.value
    assert "larger than max" in refused.value.message().lower(), refused.value
    _assert_still_serving(limits_server)


def _infer_status(server: TidalServer, values: int, compression: str | None) -> str | None:
    data = np.ones((1, values), np.float32)
    tensor = triton_grpc.InferInput("INPUT0", [1, values], "FP32").set_data_from_numpy(data)
    with triton_grpc.InferenceServerClient(server.grpc_url) as client:
        try:
            client.infer(MODEL, [tensor], compression_algorithm=compression)
        except InferenceServerException as exc:
            return exc.status()
    return None


def test_the_cap_is_a_flag(repo, grpc_transport: str):
    flags = ["--grpc-address", "127.0.0.1", "--grpc-transport", grpc_transport]
    flags += ["--grpc-max-message-size", "4096"]
    with running_server(repo, flags=flags) as server:
        assert _infer_status(server, 512, None) is None  # 2 KiB of tensor: under the cap
        assert _infer_status(server, 2048, None) == "StatusCode.RESOURCE_EXHAUSTED"
        assert _infer_status(server, 2048, "gzip") == "StatusCode.RESOURCE_EXHAUSTED"
