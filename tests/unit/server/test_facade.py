"""``InferenceServer`` in-process over a tiny repository: readiness, metadata, inference."""

import asyncio

import numpy as np
import pytest
from onnx import TensorProto

from tidal import __version__
from tidal.config import ServerSettings
from tidal.core import (
    DataType,
    ErrorCode,
    InferenceError,
    InferInput,
    InferRequest,
    RequestedOutput,
)
from tidal.server import InferenceServer, ModelMetadata, TensorMetadata

from ..tiny_onnx import identity_model, write_model

CLASSES_CONFIG = """
name: "classes"
platform: "onnxruntime_onnx"
max_batch_size: 2
input [{ name: "x" data_type: TYPE_FP32 dims: [ 4 ] }]
output [{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] label_filename: "labels.txt" }]
"""


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    (root / "classes").mkdir(parents=True)
    (root / "classes" / "config.pbtxt").write_text(CLASSES_CONFIG)
    (root / "classes" / "labels.txt").write_text("cat\ndog\nbird\nfish\n")
    write_model(root / "classes" / "1", identity_model(("batch", 4), TensorProto.FLOAT))
    return root


def scores(rows):
    data = np.asarray(rows, np.float32)
    return InferInput("x", DataType.FP32, data.shape, data)


async def _with_server(repo, body, settings=None):
    server = InferenceServer(settings or ServerSettings(), [repo])
    failed = await server.start()
    try:
        return failed, await body(server)
    finally:
        await server.stop()


def test_health_and_metadata(repo):
    async def body(server):
        assert server.is_live()
        assert server.is_ready()
        assert server.model_ready("classes")
        assert not server.model_ready("classes", 2)
        assert not server.model_ready("nope")
        return server.metadata(), server.model_metadata("classes")

    failed, (metadata, model) = asyncio.run(_with_server(repo, body))
    assert failed == []
    assert (metadata.name, metadata.version) == ("tidal", __version__)
    assert "classification" in metadata.extensions
    assert model == ModelMetadata(
        name="classes",
        versions=("1",),
        platform="onnxruntime_onnx",
        inputs=(TensorMetadata("x", "FP32", (-1, 4)),),
        outputs=(TensorMetadata("y", "FP32", (-1, 4)),),
    )


def test_infer_returns_the_tensor(repo):
    async def body(server):
        request = InferRequest("classes", [scores([[0.1, 0.2, 0.9, 0.0]])], id="r1")
        return await server.infer(request)

    _, response = asyncio.run(_with_server(repo, body))
    assert (response.model_name, response.model_version, response.id) == ("classes", 1, "r1")
    (y,) = response.outputs
    assert y.shape == (1, 4)
    np.testing.assert_array_equal(y.data, np.array([[0.1, 0.2, 0.9, 0.0]], np.float32))


def test_infer_with_classification_uses_the_labels(repo):
    async def body(server):
        request = InferRequest(
            "classes",
            [scores([[0.1, 0.2, 0.875, 0.0], [0.5, 0.25, 0.0, 0.75]])],
            outputs=[RequestedOutput("y", classification=2)],
        )
        return await server.infer(request)

    _, response = asyncio.run(_with_server(repo, body))
    (y,) = response.outputs
    assert y.datatype is DataType.BYTES
    assert y.shape == (2, 2)
    assert y.data.tolist() == [
        [b"0.875000:2:bird", b"0.200000:1:dog"],
        [b"0.750000:3:fish", b"0.500000:0:cat"],
    ]


def test_infer_checks_the_request_first(repo):
    async def body(server):
        with pytest.raises(InferenceError) as info:
            await server.infer(InferRequest("classes", [scores([[1.0, 2.0]])]))
        return info.value

    _, error = asyncio.run(_with_server(repo, body))
    assert error.code is ErrorCode.INVALID_ARG
    assert error.message == (
        "unexpected shape for input 'x' for model 'classes'. Expected [-1,4], got [1,2]"
    )


def test_model_config_errors(repo):
    async def body(server):
        assert server.model_config("classes").max_batch_size == 2
        assert server.model_config("classes", 1).name == "classes"
        errors = []
        for name, version in (("classes", 7), ("nope", None)):
            with pytest.raises(InferenceError) as info:
                server.model_config(name, version)
            errors.append((info.value.code, info.value.message))
        return errors

    _, errors = asyncio.run(_with_server(repo, body))
    assert errors == [
        (ErrorCode.NOT_FOUND, "Request for unknown model: 'classes' version 7 is not found"),
        (ErrorCode.NOT_FOUND, "Request for unknown model: 'nope' is not found"),
    ]


def test_strict_readiness_follows_failed_models(repo):
    (repo / "broken").mkdir()
    (repo / "broken" / "config.pbtxt").write_text("input [ {")

    async def body(server):
        return server.is_ready()

    failed, ready = asyncio.run(_with_server(repo, body))
    assert [r.name for r in failed] == ["broken"]
    assert ready is False
    settings = ServerSettings(strict_readiness=False)
    _, ready = asyncio.run(_with_server(repo, body, settings))
    assert ready is True


def test_stopped_server_refuses_requests(repo):
    async def scenario():
        server = InferenceServer(ServerSettings(), [repo])
        await server.start()
        await server.stop()
        assert not server.is_live()
        assert not server.is_ready()
        with pytest.raises(InferenceError) as info:
            await server.infer(InferRequest("classes", [scores([[1, 2, 3, 4]])]))
        return info.value

    error = asyncio.run(scenario())
    assert (error.code, error.message) == (ErrorCode.UNAVAILABLE, "the server is shutting down")
