"""Fixtures that run the real ``tidal`` server as a subprocess and talk to it over HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2_grpc

from .models import build_main_repository

SRC_DIR = Path(__file__).resolve().parents[2] / "src"
STARTED_RE = re.compile(r"Started HTTPService at ([0-9.]+):(\d+)")
GRPC_STARTED_RE = re.compile(r"Started GRPCInferenceService at ([0-9.]+):(\d+)")
METRICS_STARTED_RE = re.compile(r"Started Metrics Service at ([0-9.]+):(\d+)")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def tidal_env() -> dict[str, str]:
    # TIDAL_* variables would change the server's defaults; keep the tests hermetic.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDAL_")}
    env["PYTHONUNBUFFERED"] = "1"
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(SRC_DIR) + (os.pathsep + path if path else "")
    return env


def tidal_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tidal", *args]


def run_tidal(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``python -m tidal ARGS`` to completion and capture its output."""
    return subprocess.run(
        tidal_command(*args),
        capture_output=True,
        text=True,
        errors="replace",
        env=tidal_env(),
        timeout=timeout,
        check=False,
    )


def stop_process(proc: subprocess.Popen, reader: threading.Thread) -> int | None:
    """SIGTERM, wait, then SIGKILL if needed; join the stderr reader. Returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
    reader.join(STOP_TIMEOUT_S)
    if proc.stderr is not None and not proc.stderr.closed:
        proc.stderr.close()
    return proc.returncode


class TidalServer:
    """One ``python -m tidal serve`` subprocess whose stderr is drained by a thread.

    gRPC and metrics listen on free ports (``--grpc-port 0 --metrics-port 0``) unless
    ``args`` say otherwise; a later flag wins, so tests can still pass their own ports.
    """

    def __init__(
        self,
        args: Sequence[str],
        pass_fds: Sequence[int] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        # TIDAL_E2E_GRPC_TRANSPORT=aio runs the suite's servers on the grpc.aio transport
        transport = os.environ.get("TIDAL_E2E_GRPC_TRANSPORT")
        chosen = ["--grpc-transport", transport] if transport else []
        self.args = ["serve", "--grpc-port", "0", "--metrics-port", "0", *chosen, *args]
        self.lines: list[str] = []
        self.host: str | None = None
        self.port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._eof = threading.Event()
        self.proc = subprocess.Popen(
            tidal_command(*self.args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env={**tidal_env(), **(env or {})},  # env: TIDAL_* variables of a test
            pass_fds=tuple(pass_fds),
        )
        self._reader = threading.Thread(target=self._drain, name="tidal-stderr", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        try:
            for line in stream:
                with self._lock:
                    self.lines.append(line)
                if self.metrics_port is None:
                    metrics_match = METRICS_STARTED_RE.search(line)
                    if metrics_match:
                        self.metrics_port = int(metrics_match.group(2))
                if self.grpc_port is None:
                    grpc_match = GRPC_STARTED_RE.search(line)
                    if grpc_match:
                        self.grpc_port = int(grpc_match.group(2))
                if not self._started.is_set():
                    match = STARTED_RE.search(line)
                    if match:
                        self.host, self.port = match.group(1), int(match.group(2))
                        self._started.set()
        except (OSError, ValueError):
            pass
        finally:
            self._eof.set()

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self.lines)

    @property
    def url(self) -> str:
        """``host:port`` as tritonclient wants it."""
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.url}"

    @property
    def metrics_url(self) -> str:
        """``http://host:port/metrics`` of the metrics service (logged before HTTP's)."""
        assert self.metrics_port is not None, "the server announced no metrics port"
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC service (logged before the HTTP one)."""
        assert self.grpc_port is not None, "the server announced no gRPC port"
        return f"{self.host}:{self.grpc_port}"

    def wait_started_or_exited(self, timeout: float = START_TIMEOUT_S) -> bool:
        """True once the server announced its port; False if the process exited first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._started.wait(0.05):
                return True
            if self._eof.is_set() or self.proc.poll() is not None:
                # Give the reader a moment to collect the last lines.
                self._eof.wait(5)
                self._reader.join(5)
                self.proc.wait(5)
                return self._started.is_set()
        self.stop()
        pytest.fail(
            f"tidal {' '.join(self.args)} neither started nor exited within {timeout:.0f}s;"
            f" stderr:\n{self.stderr}"
        )

    def wait_started(self, timeout: float = START_TIMEOUT_S) -> TidalServer:
        if not self.wait_started_or_exited(timeout):
            pytest.fail(
                f"tidal {' '.join(self.args)} exited with {self.proc.returncode} before it"
                f" started; stderr:\n{self.stderr}"
            )
        return self

    def wait_exited(self, timeout: float = START_TIMEOUT_S) -> int:
        """Expect the process to exit on its own (without announcing a port)."""
        if self.wait_started_or_exited(timeout):
            self.stop()
            pytest.fail(
                f"tidal {' '.join(self.args)} started but was expected to exit;"
                f" stderr:\n{self.stderr}"
            )
        return self.proc.returncode

    def stop(self) -> int | None:
        """SIGTERM, wait, then SIGKILL if needed. Returns the exit code."""
        return stop_process(self.proc, self._reader)


# --------------------------------------------------------------------------- servers and clients


def serve_args(*repos: Path, flags: Sequence[str] = ()) -> list[str]:
    """``serve`` arguments for REPOS on a free loopback HTTP port, then FLAGS."""
    args: list[str] = []
    for repo in repos:
        args += ["--model-repository", str(repo)]
    return [*args, "--http-port", "0", "--http-address", "127.0.0.1", *flags]


@contextmanager
def running_server(*repos: Path, flags: Sequence[str] = ()) -> Iterator[TidalServer]:
    """A started server for REPOS, stopped on exit; fails if it died while in use."""
    proc = TidalServer(serve_args(*repos, flags=flags))
    try:
        proc.wait_started()
        yield proc
        crashed = proc.proc.poll()
    finally:
        proc.stop()
    if crashed is not None:
        pytest.fail(f"the server died during the tests ({crashed}):\n{proc.stderr}")


def http_client(
    server: TidalServer, *, timeout: float = 30.0, connections: int | None = None
) -> httpx.Client:
    """An httpx client on SERVER; ``connections`` caps (and keeps alive) that many."""
    if connections is None:
        return httpx.Client(base_url=server.base_url, timeout=timeout)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(base_url=server.base_url, timeout=timeout, limits=limits)


def triton_client(server: TidalServer, timeout: float = 30.0) -> triton_http.InferenceServerClient:
    """A tritonclient HTTP client on SERVER (a context manager that closes it)."""
    return triton_http.InferenceServerClient(server.url, network_timeout=timeout)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def main_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_main_repository(tmp_path_factory.mktemp("main_repo"))


@pytest.fixture(scope="session")
def server(main_repository: Path) -> Iterator[TidalServer]:
    with running_server(main_repository, flags=["--grpc-address", "127.0.0.1"]) as proc:
        yield proc


@pytest.fixture(scope="session")
def http(server: TidalServer) -> Iterator[httpx.Client]:
    with http_client(server) as client:
        yield client


@pytest.fixture(scope="session")
def triton(server: TidalServer) -> Iterator[triton_http.InferenceServerClient]:
    with triton_client(server) as client:
        yield client


GRPC_TRANSPORTS = ("tidal", "aio")


@pytest.fixture(scope="session")
def transport_servers(main_repository: Path, server: TidalServer) -> Iterator:
    """The session server on each ``--grpc-transport``, started when first asked for."""
    servers = {os.environ.get("TIDAL_E2E_GRPC_TRANSPORT") or "tidal": server}
    with ExitStack() as stack:

        def get(transport: str) -> TidalServer:
            if transport not in servers:
                flags = ["--grpc-address", "127.0.0.1", "--grpc-transport", transport]
                started = running_server(main_repository, flags=flags)
                servers[transport] = stack.enter_context(started)
            return servers[transport]

        yield get


@pytest.fixture(scope="module", params=GRPC_TRANSPORTS)
def grpc_transport(request: pytest.FixtureRequest) -> str:
    """The gRPC tests run on both transports, all of a module's on one, then on the other."""
    return request.param


@pytest.fixture(scope="module")
def grpc_server(grpc_transport: str, transport_servers) -> TidalServer:
    """The session server, or one like it, serving gRPC on ``grpc_transport``."""
    return transport_servers(grpc_transport)


@pytest.fixture(scope="module")
def grpc_client(grpc_server: TidalServer) -> Iterator[triton_grpc.InferenceServerClient]:
    with triton_grpc.InferenceServerClient(grpc_server.grpc_url) as client:
        yield client


@pytest.fixture(scope="module")
def stub(grpc_server: TidalServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    """A raw gRPC stub on ``grpc_server`` (a module may override it with options)."""
    with grpc.insecure_channel(grpc_server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def start_server() -> Iterator:
    """Factory for short-lived servers; all of them are stopped at teardown."""
    started: list[TidalServer] = []

    def _start(*repos: Path, flags: Sequence[str] = (), wait: bool = True) -> TidalServer:
        proc = TidalServer(serve_args(*repos, flags=flags))
        started.append(proc)
        if wait:
            proc.wait_started()
        return proc

    yield _start
    for proc in started:
        proc.stop()


# --------------------------------------------------------------------------- protocol helpers


def infer_input(name: str, array: np.ndarray, datatype: str = "FP32") -> triton_http.InferInput:
    """A tritonclient HTTP input holding ARRAY as binary data."""
    tensor = triton_http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=True)
    return tensor


def binary_body(header: dict, blobs: Sequence[bytes] = ()) -> tuple[bytes, dict[str, str]]:
    """A request body for the binary tensor data extension, with its headers."""
    head = json.dumps(header).encode()
    headers = {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }
    return head + b"".join(blobs), headers


def parse_binary_response(response: httpx.Response) -> tuple[dict, dict[str, bytes]]:
    """Split a binary response into its JSON header and each output's raw bytes."""
    length = response.headers.get("Inference-Header-Content-Length")
    assert length is not None, f"no Inference-Header-Content-Length in {dict(response.headers)}"
    body = response.content
    header = json.loads(body[: int(length)])
    offset = int(length)
    blobs: dict[str, bytes] = {}
    for output in header["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            blobs[output["name"]] = body[offset : offset + size]
            offset += size
    assert offset == len(body), f"{len(body) - offset} trailing bytes after the outputs"
    return header, blobs


def serialize_bytes(items: Sequence[bytes]) -> bytes:
    """BYTES tensor wire format: each element is a 4-byte little-endian length then its bytes."""
    return b"".join(len(item).to_bytes(4, "little") + item for item in items)


def deserialize_bytes(blob: bytes) -> list[bytes]:
    items = []
    offset = 0
    while offset < len(blob):
        size = int.from_bytes(blob[offset : offset + 4], "little")
        offset += 4
        items.append(blob[offset : offset + size])
        offset += size
    assert offset == len(blob)
    return items


def model_stats(client: httpx.Client, model: str, version: int | None = None) -> dict:
    """The one ``model_stats`` entry of MODEL (or of one VERSION), asserting a 200."""
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/stats"
    response = client.get(path)
    assert response.status_code == 200, response.text
    (stats,) = response.json()["model_stats"]
    return stats


def error_message(response: httpx.Response, status: int) -> str:
    """Assert an error status with a ``{"error": "..."}`` body and return the message."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    body = response.json()
    assert isinstance(body, dict), body
    message = body.get("error")
    assert isinstance(message, str), body
    assert message.strip(), "empty error message"
    return message
