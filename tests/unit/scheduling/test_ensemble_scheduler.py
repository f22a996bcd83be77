"""Ensembles in-process: a real ``InferenceServer`` over ONNX step models."""

import asyncio

import numpy as np
import pytest
from onnx import TensorProto, helper

from tidal.config import ServerSettings
from tidal.core import DataType, ErrorCode, InferenceError, InferInput, InferRequest, ModelState
from tidal.core.types import RequestedOutput
from tidal.server import InferenceServer

from ..tiny_onnx import _serialize, add_model, identity_neg_model, write_model

ENS = """
name: "ens"
platform: "ensemble"
max_batch_size: 4
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [
  { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "NEG" data_type: TYPE_FP32 dims: [ 4 ] }
]
ensemble_scheduling {
  step [
    { model_name: "neg" model_version: -1
      input_map { key: "x" value: "IN" }
      output_map [ { key: "y" value: "copy" }, { key: "z" value: "NEG" } ] },
    { model_name: "add" model_version: -1
      input_map [ { key: "a" value: "copy" }, { key: "b" value: "IN" } ]
      output_map { key: "sum" value: "OUT" } }
  ]
}
"""

PICK = """
name: "pick"
platform: "ensemble"
max_batch_size: 4
input [
  { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "IDX" data_type: TYPE_INT64 dims: [ 1 ] }
]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] } ]
ensemble_scheduling {
  step [
    { model_name: "neg" input_map { key: "x" value: "IN" } output_map { key: "y" value: "v" } },
    { model_name: "gather"
      input_map [ { key: "data" value: "v" }, { key: "idx" value: "IDX" } ]
      output_map { key: "out" value: "OUT" } }
  ]
}
"""

MISSING_STEP = """
platform: "ensemble"
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
ensemble_scheduling {
  step [ { model_name: "nowhere" input_map { key: "x" value: "IN" }
           output_map { key: "y" value: "OUT" } } ]
}
"""


def gather_model() -> bytes:
    """``out[b, 0] = data[b, idx[b, 0]]``; an index past 3 fails in ONNX Runtime."""
    graph = helper.make_graph(
        [helper.make_node("GatherElements", ["data", "idx"], ["out"], axis=1)],
        "gather",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, ["batch", 4]),
            helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 1]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1])],
    )
    return _serialize(graph)


def ensemble(root, name, text):
    (root / name / "1").mkdir(parents=True)
    (root / name / "config.pbtxt").write_text(text)


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    write_model(root / "neg" / "1", identity_neg_model(("batch", 4)))
    write_model(root / "add" / "1", add_model(("batch", 4)))
    write_model(root / "gather" / "1", gather_model())
    ensemble(root, "ens", ENS)
    ensemble(root, "pick", PICK)
    return root


def run(repo, body):
    async def main():
        server = InferenceServer(ServerSettings(), [repo])
        failed = await server.start()
        try:
            return failed, await body(server)
        finally:
            await server.stop()

    return asyncio.run(main())


def fp32(name, rows):
    data = np.asarray(rows, np.float32)
    return InferInput(name, DataType.FP32, data.shape, data)


def indices(rows):
    data = np.asarray(rows, np.int64)
    return InferInput("IDX", DataType.INT64, data.shape, data)


def test_steps_run_in_order_and_the_outputs_come_back(repo):
    async def body(server):
        request = InferRequest("ens", [fp32("IN", [[1, 2, 3, 4]])], id="r1")
        return await server.infer(request)

    failed, response = run(repo, body)
    assert failed == []
    assert (response.model_name, response.model_version, response.id) == ("ens", 1, "r1")
    outputs = {o.name: o for o in response.outputs}
    assert list(outputs) == ["OUT", "NEG"]
    np.testing.assert_array_equal(outputs["OUT"].data, [[2, 4, 6, 8]])
    np.testing.assert_array_equal(outputs["NEG"].data, [[-1, -2, -3, -4]])
    assert outputs["OUT"].datatype is DataType.FP32
    assert outputs["OUT"].shape == (1, 4)


def test_only_the_requested_outputs(repo):
    async def body(server):
        request = InferRequest(
            "ens", [fp32("IN", [[1, 1, 1, 1]])], outputs=[RequestedOutput("NEG")]
        )
        return await server.infer(request)

    _, response = run(repo, body)
    assert [o.name for o in response.outputs] == ["NEG"]


def test_metadata_and_config_say_ensemble(repo):
    async def body(server):
        return server.model_metadata("ens"), server.model_config("ens")

    _, (metadata, config) = run(repo, body)
    assert metadata.platform == "ensemble"
    assert [(t.name, t.shape) for t in metadata.inputs] == [("IN", (-1, 4))]
    assert config.backend == ""
    assert config.instance_groups == ()
    assert [s.model_name for s in config.ensemble_steps] == ["neg", "add"]


def test_concurrent_ensemble_requests_batch_in_their_steps(repo):
    async def body(server):
        requests = [InferRequest("ens", [fp32("IN", [[i, 0, 0, 0]])]) for i in range(8)]
        responses = await asyncio.gather(*(server.infer(r) for r in requests))
        (_, _, neg), *_ = server.model_statistics("neg")
        (_, _, ens), *_ = server.model_statistics("ens")
        return responses, neg, ens

    _, (responses, neg, ens) = run(repo, body)
    for i, response in enumerate(responses):
        np.testing.assert_array_equal(response.outputs[0].data, [[2 * i, 0, 0, 0]])
    assert neg.inference_count == 8
    assert neg.execution_count < 8  # the step's dynamic batcher merged ensemble requests
    assert ens.success.count == 8
    assert ens.inference_count == 8


def test_a_failing_step_fails_only_its_request(repo):
    async def body(server):
        good = InferRequest("pick", [fp32("IN", [[1, 2, 3, 4]]), indices([[2]])])
        bad = InferRequest("pick", [fp32("IN", [[1, 2, 3, 4]]), indices([[9]])])
        results = await asyncio.gather(
            server.infer(good), server.infer(bad), server.infer(good), return_exceptions=True
        )
        again = await server.infer(good)
        return results, again, server.model_ready("pick")

    _, (results, again, ready) = run(repo, body)
    first, failure, third = results
    np.testing.assert_array_equal(first.outputs[0].data, [[3]])
    np.testing.assert_array_equal(third.outputs[0].data, [[3]])
    assert isinstance(failure, InferenceError)
    assert failure.code is ErrorCode.INTERNAL
    assert failure.message.startswith("in ensemble 'pick', model 'gather' version 1 failed")
    np.testing.assert_array_equal(again.outputs[0].data, [[3]])
    assert ready


def test_a_step_request_that_does_not_fit_is_an_invalid_argument(repo):
    async def body(server):
        # Batch 5 is over the ensemble's max_batch_size: refused before any step runs.
        with pytest.raises(InferenceError) as info:
            await server.infer(InferRequest("ens", [fp32("IN", [[0] * 4] * 5)]))
        return info.value

    _, error = run(repo, body)
    assert error.code is ErrorCode.INVALID_ARG
    assert "batch-size must be <= 4" in error.message


def test_an_ensemble_with_a_missing_step_model_is_unavailable(repo):
    ensemble(repo, "broken", MISSING_STEP)

    async def body(server):
        record = server.repository.record("broken")
        return record.state, record.reason, server.model_ready("ens")

    failed, (state, reason, ens_ready) = run(repo, body)
    assert [r.name for r in failed] == ["broken"]
    assert state is ModelState.UNAVAILABLE
    assert (
        "ensemble 'broken': step 0 (model 'nowhere'): the model is not available: Request for "
        "unknown model: 'nowhere' is not found"
    ) in reason
    assert ens_ready


def test_stopping_finishes_the_ensemble_requests_in_flight(repo):
    async def body(server):
        requests = [
            asyncio.ensure_future(server.infer(InferRequest("ens", [fp32("IN", [[1, 1, 1, 1]])])))
            for _ in range(4)
        ]
        await asyncio.sleep(0)  # the requests are in their first step
        await server.stop()
        return await asyncio.gather(*requests, return_exceptions=True)

    _, results = run(repo, body)
    for result in results:
        assert not isinstance(result, BaseException), result
        np.testing.assert_array_equal(result.outputs[0].data, [[2, 2, 2, 2]])
