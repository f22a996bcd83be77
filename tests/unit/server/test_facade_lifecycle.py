"""The facade's lifecycle in-process: readiness during start-up, draining, cancelling at the
exit timeout, and the repository API."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from onnx import TensorProto, helper

from tidal.config import ServerSettings
from tidal.core import DataType, ErrorCode, InferenceError, InferInput, InferRequest
from tidal.server import InferenceServer

from ..tiny_onnx import IR_VERSION, OPSET, write_model
from ..waiting import until

CONFIG = """
name: "slow"
platform: "onnxruntime_onnx"
max_batch_size: 0
input [{ name: "steps" data_type: TYPE_INT64 dims: [ 1 ] }]
output [{ name: "out" data_type: TYPE_FP32 dims: [ 1 ] }]
"""


def slow_model() -> bytes:
    """out = a float after ``steps`` iterations of a small loop: run time set per request."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond"], ["cond_out"]),
            helper.make_node("Sin", ["acc"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1]),
        ],
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["steps"], ["count"], keepdims=0),
            helper.make_node(
                "Constant", [], ["go"], value=helper.make_tensor("g", TensorProto.BOOL, [], [1])
            ),
            helper.make_node(
                "Constant",
                [],
                ["start"],
                value=helper.make_tensor("s", TensorProto.FLOAT, [1], [1]),
            ),
            helper.make_node("Loop", ["count", "go", "start"], ["out"], body=body),
        ],
        "slow",
        [helper.make_tensor_value_info("steps", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    return model.SerializeToString()


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "slow").mkdir()
    (tmp_path / "slow" / "config.pbtxt").write_text(CONFIG)
    write_model(tmp_path / "slow" / "1", slow_model())
    return tmp_path


def slow_request(steps: int) -> InferRequest:
    data = np.array([steps], np.int64)
    return InferRequest("slow", [InferInput("steps", DataType.INT64, (1,), data)])


def test_live_but_not_ready_until_started(repo):
    async def scenario():
        server = InferenceServer(ServerSettings(), [repo])
        before = (server.is_live(), server.is_ready())
        with pytest.raises(InferenceError) as info:
            await server.load_model("slow")
        await server.start()
        after = (server.is_live(), server.is_ready())
        await server.stop()
        return before, after, info.value

    before, after, error = asyncio.run(scenario())
    assert before == (True, False)
    assert after == (True, True)
    assert error.code is ErrorCode.UNAVAILABLE


def test_drain_waits_for_accepted_requests(repo):
    async def scenario():
        server = InferenceServer(ServerSettings(), [repo])
        await server.start()
        running = asyncio.ensure_future(server.infer(slow_request(200_000)))
        await until(lambda: server.resolve("slow").scheduler.inflight == 1, "the request")
        server.begin_shutdown()
        assert not server.is_ready() and server.is_live()
        with pytest.raises(InferenceError) as info:
            await server.infer(slow_request(1))
        assert info.value.code is ErrorCode.UNAVAILABLE
        with pytest.raises(InferenceError):
            await server.unload_model("slow")
        drained = await server.drain(30)
        response = running.result()
        await server.stop()
        return drained, response

    drained, response = asyncio.run(scenario())
    assert drained is True
    assert response.outputs[0].name == "out"


def test_cancel_inflight_answers_with_an_error(repo):
    async def scenario():
        server = InferenceServer(ServerSettings(exit_timeout_secs=0), [repo])
        await server.start()
        running = asyncio.ensure_future(server.infer(slow_request(600_000)))
        await until(lambda: server.resolve("slow").scheduler.inflight == 1, "the request")
        server.begin_shutdown()
        drained = await server.drain(0.05)
        cancelled = server.cancel_inflight()
        with pytest.raises(InferenceError) as info:
            await running
        assert await server.drain(1)
        await server.stop()
        return drained, cancelled, info.value

    drained, cancelled, error = asyncio.run(scenario())
    assert (drained, cancelled) == (False, 1)
    assert error.code is ErrorCode.UNAVAILABLE
    assert "--exit-timeout-secs (0 s) and was cancelled" in error.message


def test_a_client_that_goes_away_still_cancels(repo):
    async def scenario():
        server = InferenceServer(ServerSettings(), [repo])
        await server.start()
        running = asyncio.ensure_future(server.infer(slow_request(300_000)))
        await until(lambda: server.resolve("slow").scheduler.inflight == 1, "the request")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert await server.drain(0)
        await server.stop()

    asyncio.run(scenario())


def test_repository_api_through_the_facade(repo):
    async def scenario():
        server = InferenceServer(ServerSettings(model_control_mode="explicit"), [repo])
        await server.start()
        try:
            first = await server.repository_index()
            await server.load_model("slow")
            loaded = await server.repository_index(ready_only=True)
            await server.unload_model("slow", unload_dependents=True)
            unloaded = await server.repository_index()
            ready = server.is_ready()
        finally:
            await server.stop()
        return first, loaded, unloaded, ready

    first, loaded, unloaded, ready = asyncio.run(scenario())
    assert [(e.name, e.version, e.state) for e in first] == [("slow", "", "")]
    assert [(e.name, e.version, e.state) for e in loaded] == [("slow", "1", "READY")]
    assert [(e.state, e.reason) for e in unloaded] == [("UNAVAILABLE", "unloaded")]
    assert ready is True
