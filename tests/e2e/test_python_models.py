"""Triton-style Python models (``model.py``) served by a real ``tidal serve``, via tritonclient."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from .conftest import TidalServer, infer_input, running_server, triton_client
from .python_models import build_python_repository, build_slow_init_repository


def _make_venv(path: Path) -> Path:
    """A bare virtual environment that can import this interpreter's numpy (through a .pth)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    purelib = sysconfig.get_path("purelib", vars={"base": str(path), "platbase": str(path)})
    numpy_home = Path(np.__file__).resolve().parents[1]
    Path(purelib).mkdir(parents=True, exist_ok=True)
    (Path(purelib) / "tidal_test_numpy.pth").write_text(f"{numpy_home}\n")
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("python_repo")
    # The environment lives in the model's folder: tidal refuses one outside it.
    return build_python_repository(repo, venv=_make_venv(repo / "py_env" / "env"))


@pytest.fixture(scope="module")
def venv(repo: Path) -> Path:
    return repo / "py_env" / "env"


@pytest.fixture(scope="module")
def py_server(repo: Path) -> Iterator[TidalServer]:
    with running_server(repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(py_server: TidalServer) -> Iterator[httpclient.InferenceServerClient]:
    with triton_client(py_server, timeout=60.0) as triton:
        yield triton


def _fails(call, status: str) -> str:
    with pytest.raises(InferenceServerException) as caught:
        call()
    assert caught.value.status() == status, caught.value
    return caught.value.message()


# --------------------------------------------------------------------------- basics


def test_add_sub_model(client: httpclient.InferenceServerClient) -> None:
    a = np.array([1, 2, 3, 4], dtype=np.float32)
    b = np.array([10, 20, 30, 40], dtype=np.float32)
    inputs = [infer_input("INPUT0", a, "FP32"), infer_input("INPUT1", b, "FP32")]
    result = client.infer("py_add_sub", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    # The optional input, when given, is seen; when left out, the model got None for it.
    scale = infer_input("SCALE", np.array([2], dtype=np.float32), "FP32")
    scaled = client.infer("py_add_sub", [*inputs, scale])
    np.testing.assert_array_equal(scaled.as_numpy("OUTPUT0"), (a + b) * 2)


def test_metadata_and_config(client: httpclient.InferenceServerClient) -> None:
    metadata = client.get_model_metadata("py_add_sub")
    assert metadata["platform"] == "python"
    assert [i["name"] for i in metadata["inputs"]] == ["INPUT0", "INPUT1", "SCALE"]
    config = client.get_model_config("py_add_sub")
    assert config["backend"] == "python"
    assert config["default_model_filename"] == "model.py"
    assert client.is_model_ready("py_add_sub")


def test_model_sees_args_id_parameters_and_outputs(
    client: httpclient.InferenceServerClient, repo: Path
) -> None:
    data = np.array([7, 8], dtype=np.int32)
    result = client.infer(
        "py_inspect",
        [infer_input("INPUT0", data, "INT32")],
        outputs=[httpclient.InferRequestedOutput("INFO")],
        request_id="req-7",
        parameters={"a": 1, "b": "x", "c": True},
    )
    assert result.as_numpy("ECHO") is None  # not requested, not returned
    seen = json.loads(result.as_numpy("INFO")[0])
    args = seen["args"]
    assert args["model_name"] == "py_inspect"
    assert args["model_version"] == "1"
    assert args["model_instance_kind"] == "CPU"
    assert args["model_instance_name"] == "py_inspect_0_0"
    assert args["model_instance_device_id"] == "0"
    assert Path(args["model_repository"]) == repo / "py_inspect"
    assert args["model_config"]["name"] == "py_inspect"
    assert args["model_config"]["input"][0]["dims"] == [2]  # numbers, as Triton
    assert seen["request_id"] == "req-7"
    assert json.loads(seen["parameters"]) == {"a": 1, "b": "x", "c": True}
    assert seen["requested"] == ["INFO"]
    assert seen["input_type"] == "Tensor"
    assert seen["input_dtype"] == "int32"

    everything = client.infer("py_inspect", [infer_input("INPUT0", data, "INT32")])
    assert json.loads(everything.as_numpy("INFO")[0])["requested"] == ["ECHO", "INFO"]
    assert json.loads(everything.as_numpy("INFO")[0])["request_id"] == ""
    np.testing.assert_array_equal(everything.as_numpy("ECHO"), data)


def test_string_model(client: httpclient.InferenceServerClient) -> None:
    text = np.array([b"hello", "grüße".encode(), b"", b"a\x00b"], dtype=object)
    result = client.infer("py_strings", [infer_input("TEXT", text, "BYTES")])
    assert result.as_numpy("UPPER").tolist() == [b"HELLO", "GRüßE".encode(), b"", b"A\x00B"]
    np.testing.assert_array_equal(result.as_numpy("LENGTH"), [5, 7, 0, 3])


def test_auto_complete_config_without_config_file(
    client: httpclient.InferenceServerClient,
) -> None:
    config = client.get_model_config("py_auto")
    assert config["backend"] == "python"
    assert config["max_batch_size"] == 4
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("INPUT0", "TYPE_FP32", [3])
    ]
    assert [t["name"] for t in config["output"]] == ["OUTPUT0"]
    assert "dynamic_batching" in config
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    result = client.infer("py_auto", [infer_input("INPUT0", data, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data * 10)


# --------------------------------------------------------------------------- errors


def _mode(client: httpclient.InferenceServerClient, mode: int):
    return client.infer(
        "py_faulty", [infer_input("MODE", np.array([mode], dtype=np.int32), "INT32")]
    )


def test_exception_in_execute_answers_500_and_model_stays_ready(
    client: httpclient.InferenceServerClient,
) -> None:
    message = _fails(lambda: _mode(client, 1), "500")
    assert message.startswith(
        "Failed to process the request(s) for model 'py_faulty_0_0', message: "
        "ValueError: the model raised on purpose"
    )
    assert "model.py" in message  # where it was raised, as Triton shows it
    assert client.is_model_ready("py_faulty")
    assert _mode(client, 0).as_numpy("OK").tolist() == [0]


def test_error_on_response(client: httpclient.InferenceServerClient) -> None:
    assert _fails(lambda: _mode(client, 2), "500") == "the response carries an error"
    assert _fails(lambda: _mode(client, 3), "400") == "MODE 3 is refused"
    message = _fails(lambda: _mode(client, 4), "500")
    assert "Number of InferenceResponse objects do not match" in message
    assert _mode(client, 5).as_numpy("OK").tolist() == [5]


def test_errors_over_grpc(py_server: TidalServer) -> None:
    triton = grpcclient.InferenceServerClient(py_server.grpc_url)
    try:

        def mode(value: int):
            tensor = grpcclient.InferInput("MODE", [1], "INT32")
            tensor.set_data_from_numpy(np.array([value], dtype=np.int32))
            return triton.infer("py_faulty", [tensor])

        assert "ValueError: the model raised on purpose" in _fails(
            lambda: mode(1), "StatusCode.INTERNAL"
        )
        assert _fails(lambda: mode(3), "StatusCode.INVALID_ARGUMENT") == "MODE 3 is refused"
        assert mode(0).as_numpy("OK").tolist() == [0]
    finally:
        triton.close()


def _pid(client: httpclient.InferenceServerClient, sleep_ms: int = 0) -> int:
    sleep = infer_input("SLEEP_MS", np.array([sleep_ms], dtype=np.int32), "INT32")
    return int(client.infer("py_pid", [sleep]).as_numpy("PID")[0])


def _pid_in_thread(url: str, sleep_ms: int) -> int:
    # tritonclient.http runs on gevent: each thread needs a client of its own.
    triton = httpclient.InferenceServerClient(url, network_timeout=60.0)
    try:
        return _pid(triton, sleep_ms)
    finally:
        triton.close()


def _wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def test_killed_worker_fails_only_its_requests_and_restarts(
    py_server: TidalServer, repo: Path
) -> None:
    first = _pid_in_thread(py_server.url, 0)
    with ThreadPoolExecutor(2) as pool:
        inflight = pool.submit(_pid_in_thread, py_server.url, 20_000)
        marker = repo / "py_pid" / f"executing.{first}"
        _wait_for(marker.exists, what="the request to reach execute")
        queued = pool.submit(_pid_in_thread, py_server.url, 0)  # waits for the only instance
        time.sleep(0.2)
        os.kill(first, signal.SIGKILL)
        with pytest.raises(InferenceServerException) as caught:
            inflight.result(timeout=30)
        second = queued.result(timeout=60)  # ran on the restarted worker
    assert caught.value.status() == "500"
    message = caught.value.message()
    assert f"(pid {first}) was killed by signal 9 (SIGKILL)" in message, message
    assert second != first
    assert py_server.proc.poll() is None
    triton = httpclient.InferenceServerClient(py_server.url)
    try:
        assert triton.is_model_ready("py_pid")
        assert _pid(triton) == second
    finally:
        triton.close()
    assert f"worker restarted as process {second}" in py_server.stderr


def test_killed_while_loading_is_restarted(start_server, tmp_path: Path) -> None:
    repo = build_slow_init_repository(tmp_path / "repo")
    server = start_server(repo, wait=False)
    folder = repo / "py_slow_init"
    marker = _wait_for(lambda: next(folder.glob("init.*"), None), what="initialize to start")
    killed = int(marker.suffix[1:])
    os.kill(killed, signal.SIGKILL)
    server.wait_started()
    triton = httpclient.InferenceServerClient(server.url)
    try:
        assert triton.is_model_ready("py_slow_init")
        data = infer_input("INPUT0", np.array([1], dtype=np.int32), "INT32")
        pid = int(triton.infer("py_slow_init", [data]).as_numpy("PID")[0])
    finally:
        triton.close()
    assert pid != killed
    assert "while loading; starting another worker" in server.stderr


# --------------------------------------------------------------------------- batching and BLS


def test_dynamic_batching_hands_several_requests_to_one_execute(py_server: TidalServer) -> None:
    def one(_: int) -> int:
        triton = httpclient.InferenceServerClient(py_server.url, network_timeout=60)
        try:
            data = infer_input("INPUT0", np.zeros((1, 2), dtype=np.float32), "FP32")
            return int(triton.infer("py_batch", [data]).as_numpy("COUNT")[0, 0])
        finally:
            triton.close()

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(one, range(4)))
    assert counts == [4, 4, 4, 4]


def _int_pair(rows: int = 1) -> tuple[np.ndarray, np.ndarray, list[httpclient.InferInput]]:
    a = np.arange(16 * rows, dtype=np.int32).reshape(rows, 16)
    b = np.full((rows, 16), 3, dtype=np.int32)
    return a, b, [infer_input("INPUT0", a, "INT32"), infer_input("INPUT1", b, "INT32")]


def test_bls_calls_onnx_model(client: httpclient.InferenceServerClient) -> None:
    a, b, inputs = _int_pair(rows=2)
    result = client.infer("py_bls", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a - b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a + b)


def test_bls_error_reaches_the_model(client: httpclient.InferenceServerClient) -> None:
    _, _, inputs = _int_pair()
    target = infer_input("MODEL", np.array([[b"no_such_model"]], dtype=object), "BYTES")
    message = _fails(lambda: client.infer("py_bls", [*inputs, target]), "500")
    assert "TritonModelException: Request for unknown model: 'no_such_model'" in message


def test_async_bls(client: httpclient.InferenceServerClient) -> None:
    a, b, inputs = _int_pair()
    result = client.infer("py_bls_async", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 2 * (a + b))


def test_bls_from_several_threads_at_once(client: httpclient.InferenceServerClient) -> None:
    a, b, inputs = _int_pair(rows=3)
    result = client.infer("py_bls_threads", inputs)
    # sum over offsets 0..3 of (a + offset) + b
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), 4 * (a + b) + 6)


def test_execution_env_path_runs_that_interpreter(
    client: httpclient.InferenceServerClient, venv: Path
) -> None:
    result = client.infer("py_env", [infer_input("INPUT0", np.array([0], dtype=np.int32), "INT32")])
    prefix = Path(result.as_numpy("PREFIX")[0].decode())
    assert prefix.resolve() == venv.resolve()
