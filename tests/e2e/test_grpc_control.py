"""A server in explicit model-control mode over gRPC: load and unload through the repository
RPCs, and requests of clients that give up (deadline, cancelled stream) dropped from the queue."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from .conftest import TidalServer, running_server
from .control_models import scale_bytes, scale_model, slow_model
from .scheduling_models import SLOW_ITERATIONS_PER_MS


@pytest.fixture(scope="module")
def control_server(
    tmp_path_factory: pytest.TempPathFactory, grpc_transport: str
) -> Iterator[TidalServer]:
    repo: Path = tmp_path_factory.mktemp("grpc_control_repo")
    slow_model(repo, "slow")
    scale_model(repo, "scale", 2.0)
    flags = ["--model-control-mode", "explicit", "--load-model", "slow"]
    flags += ["--grpc-address", "127.0.0.1", "--grpc-transport", grpc_transport]
    with running_server(repo, flags=flags) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(control_server: TidalServer) -> Iterator[triton_grpc.InferenceServerClient]:
    with triton_grpc.InferenceServerClient(control_server.grpc_url) as grpc_client:
        yield grpc_client


def _scale_inputs() -> list[triton_grpc.InferInput]:
    data = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    return [triton_grpc.InferInput("X", [1, 4], "FP32").set_data_from_numpy(data)]


# ----------------------------------------------------------------------------- load / unload


def test_load_infer_unload(client):
    index = {m["name"]: m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index["scale"] == {"name": "scale"}  # found, never loaded
    assert not client.is_model_ready("scale")
    client.load_model("scale")
    assert client.is_model_ready("scale")
    assert client.infer("scale", _scale_inputs()).as_numpy("Y").tolist() == [[2, 4, 6, 8]]
    client.unload_model("scale", unload_dependents=True)
    assert not client.is_model_ready("scale")
    with pytest.raises(InferenceServerException) as gone:
        client.infer("scale", _scale_inputs())
    assert "scale" in gone.value.message()


def test_load_from_files_sent_with_the_request(client):
    config = json.dumps(
        {
            "backend": "onnxruntime",
            "max_batch_size": 4,
            "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}],
            "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [4]}],
        }
    )
    client.load_model("pushed", config=config, files={"file:1/model.onnx": scale_bytes(3.0)})
    assert client.infer("pushed", _scale_inputs()).as_numpy("Y").tolist() == [[3, 6, 9, 12]]
    client.unload_model("pushed")


def test_load_errors_have_the_facade_message(client):
    with pytest.raises(InferenceServerException) as no_config:
        client.load_model("pushed2", files={"file:1/model.onnx": b"x"})
    assert no_config.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "'config' must be specified" in no_config.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.load_model("no_such_folder")
    assert "no_such_folder" in missing.value.message()


def test_bad_unload_parameter(control_server):
    with grpc.insecure_channel(control_server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = pb.RepositoryModelUnloadRequest(model_name="scale")
        request.parameters["unload_dependents"].string_param = "yes"
        with pytest.raises(grpc.RpcError) as refused:
            stub.RepositoryModelUnload(request)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


# ----------------------------------------------------------------------------- cancellation


def _slow_inputs(milliseconds: int) -> list[triton_grpc.InferInput]:
    return [
        triton_grpc.InferInput("INPUT0", [1, 4], "FP32").set_data_from_numpy(
            np.ones((1, 4), np.float32)
        ),
        triton_grpc.InferInput("DELAY", [1, 1], "INT64").set_data_from_numpy(
            np.array([[milliseconds * SLOW_ITERATIONS_PER_MS]], np.int64)
        ),
    ]


def _count(client: triton_grpc.InferenceServerClient) -> int:
    return client.get_inference_statistics("slow").model_stats[0].inference_count


def _while_busy(client: triton_grpc.InferenceServerClient, give_up) -> None:
    """Hold the slow model's one instance for 600 ms and run ``give_up`` meanwhile."""
    errors: list[BaseException] = []

    def busy() -> None:
        try:
            client.infer("slow", _slow_inputs(600))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=busy)
    thread.start()
    time.sleep(0.15)  # the slow request now runs on the only instance
    give_up()
    thread.join(30)
    assert not errors, errors


def test_request_past_its_deadline_is_dropped_from_the_queue(client):
    before = _count(client)

    def give_up() -> None:
        with pytest.raises(InferenceServerException) as late:
            client.infer("slow", _slow_inputs(1), client_timeout=0.1)
        assert "Deadline" in late.value.message() or "DEADLINE" in str(late.value.status())

    _while_busy(client, give_up)
    time.sleep(0.3)
    assert _count(client) == before + 1  # the queued request never ran


def test_requests_of_a_cancelled_stream_are_dropped(client, control_server):
    before = _count(client)
    with grpc.insecure_channel(control_server.grpc_url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def give_up() -> None:
            request = pb.ModelInferRequest(model_name="slow", id="q")
            for tensor in _slow_inputs(1):
                request.inputs.add().CopyFrom(tensor._get_tensor())
                request.raw_input_contents.append(tensor._get_content())
            release = threading.Event()

            def requests():
                yield request
                release.wait(5)  # keep the stream open until it is cancelled

            call = stub.ModelStreamInfer(requests())
            time.sleep(0.1)  # the request is queued behind the busy one
            call.cancel()
            release.set()

        _while_busy(client, give_up)
    time.sleep(0.3)
    assert _count(client) == before + 1
