import time

import numpy as np
import pytest

from tidal.backends.tensor_instance import TensorModelInstance
from tidal.config import ModelConfig, TensorConfig
from tidal.core import (
    DataType,
    ErrorCode,
    InferenceError,
    InferInput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)

FP32 = DataType.FP32


class Doubler(TensorModelInstance):
    """``y = 2 * x`` and ``n = sum(x)`` per row; any negative input makes it fail."""

    def __init__(self, config, version=1, outputs_override=None):
        super().__init__(config, version)
        self.calls = []
        self.outputs_override = outputs_override

    def run(self, feeds, output_names):
        self.calls.append(({k: v.copy() for k, v in feeds.items()}, list(output_names)))
        x = feeds["x"]
        if (x < 0).any():
            raise RuntimeError("negative input")
        if self.outputs_override is not None:
            return self.outputs_override(x, output_names)
        results = {"y": x * 2, "n": x.reshape(x.shape[0], -1).sum(axis=1)}
        return [results[name] for name in output_names]


BATCHED = ModelConfig(
    name="m",
    max_batch_size=8,
    inputs=(TensorConfig("x", FP32, (3,)),),
    outputs=(TensorConfig("y", FP32, (3,)), TensorConfig("n", FP32, ())),
)


def _request(rows, request_id=None, outputs=None, dtype=np.float32):
    data = np.asarray(rows, dtype=dtype)
    return InferRequest(
        "m",
        [InferInput("x", DataType.from_numpy(data.dtype), data.shape, data)],
        id=request_id,
        outputs=outputs,
    )


def test_single_request_runs_once_and_answers_in_full():
    instance = Doubler(BATCHED, version=7)
    (response,) = instance.execute([_request([[1, 2, 3]], request_id="a")])
    assert isinstance(response, InferResponse)
    assert (response.model_name, response.model_version, response.id) == ("m", 7, "a")
    assert [(o.name, o.datatype, o.shape) for o in response.outputs] == [
        ("y", FP32, (1, 3)),
        ("n", FP32, (1,)),
    ]
    np.testing.assert_array_equal(response.outputs[0].data, [[2, 4, 6]])
    np.testing.assert_array_equal(response.outputs[1].data, [6])
    assert len(instance.calls) == 1
    assert instance.calls[0][1] == ["y", "n"]


def test_batch_is_merged_into_one_run_and_split_back():
    instance = Doubler(BATCHED)
    batch = [
        _request([[1, 1, 1]], request_id="a"),
        _request([[2, 2, 2], [3, 3, 3]], request_id="b"),
        _request([[4, 4, 4], [5, 5, 5], [6, 6, 6]], request_id="c"),
    ]
    results = instance.execute(batch)
    assert len(instance.calls) == 1
    merged = instance.calls[0][0]["x"]
    assert merged.shape == (6, 3)
    np.testing.assert_array_equal(merged[:, 0], [1, 2, 3, 4, 5, 6])
    assert [r.id for r in results] == ["a", "b", "c"]
    assert [r.outputs[0].shape for r in results] == [(1, 3), (2, 3), (3, 3)]
    np.testing.assert_array_equal(results[1].outputs[0].data, [[4, 4, 4], [6, 6, 6]])
    np.testing.assert_array_equal(results[2].outputs[1].data, [12, 15, 18])


def test_merged_run_asks_for_the_union_of_requested_outputs():
    instance = Doubler(BATCHED)
    batch = [
        _request([[1, 1, 1]], outputs=[RequestedOutput("n")]),
        _request([[2, 2, 2]], outputs=[RequestedOutput("y"), RequestedOutput("n")]),
    ]
    results = instance.execute(batch)
    assert instance.calls[0][1] == ["n", "y"]
    assert [o.name for o in results[0].outputs] == ["n"]
    assert [o.name for o in results[1].outputs] == ["n", "y"]
    np.testing.assert_array_equal(results[1].outputs[1].data, [[4, 4, 4]])


def test_one_request_without_output_list_asks_for_every_output():
    instance = Doubler(BATCHED)
    batch = [_request([[1, 1, 1]], outputs=[RequestedOutput("n")]), _request([[2, 2, 2]])]
    results = instance.execute(batch)
    assert instance.calls[0][1] == ["y", "n"]
    assert [o.name for o in results[0].outputs] == ["n"]
    assert [o.name for o in results[1].outputs] == ["y", "n"]


def test_bad_request_does_not_fail_its_neighbours():
    instance = Doubler(BATCHED, version=2)
    batch = [_request([[1, 1, 1]]), _request([[-1, 0, 0]]), _request([[3, 3, 3]])]
    results = instance.execute(batch)
    assert len(instance.calls) == 4  # the failed merged run, then each request alone
    np.testing.assert_array_equal(results[0].outputs[0].data, [[2, 2, 2]])
    np.testing.assert_array_equal(results[2].outputs[0].data, [[6, 6, 6]])
    error = results[1]
    assert isinstance(error, InferenceError)
    assert error.code is ErrorCode.INTERNAL
    assert error.message == "model 'm' version 2 failed to execute: negative input"


def test_single_failing_request_returns_an_error():
    (error,) = Doubler(BATCHED).execute([_request([[-1, -1, -1]])])
    assert isinstance(error, InferenceError)
    assert error.message == "model 'm' version 1 failed to execute: negative input"


def test_inference_error_from_the_runtime_is_returned_unchanged():
    raised = InferenceError.unavailable("busy")

    class Busy(Doubler):
        def run(self, feeds, output_names):
            raise raised

    (result,) = Busy(BATCHED).execute([_request([[1, 1, 1]])])
    assert result is raised


def test_requests_with_different_shapes_run_alone():
    config = ModelConfig(
        name="m",
        max_batch_size=8,
        inputs=(TensorConfig("x", FP32, (-1,)),),
        outputs=(TensorConfig("y", FP32, (-1,)),),
    )
    instance = Doubler(config)
    batch = [_request([[1, 2]], outputs=[RequestedOutput("y")]), _request([[1, 2, 3]])]
    results = instance.execute(batch)
    assert [r.outputs[0].shape for r in results] == [(1, 2), (1, 3)]
    np.testing.assert_array_equal(results[1].outputs[0].data, [[2, 4, 6]])
    assert len(instance.calls) == 2  # concatenation failed before any run


def test_unknown_input_fails_only_its_request():
    instance = Doubler(BATCHED)
    stray = InferRequest(
        "m", [InferInput("w", FP32, (1, 3), np.zeros((1, 3), np.float32))], id="stray"
    )
    results = instance.execute([_request([[1, 1, 1]]), stray])
    assert isinstance(results[0], InferResponse)
    assert isinstance(results[1], InferenceError)
    assert results[1].code is ErrorCode.INTERNAL


def test_input_reshape_is_applied_after_the_batch_dimension():
    config = ModelConfig(
        name="m",
        max_batch_size=4,
        inputs=(TensorConfig("x", FP32, (4,), reshape=(2, 2)),),
        outputs=(TensorConfig("y", FP32, (2, 2)),),
    )
    instance = Doubler(config)
    (response,) = instance.execute([_request([[1, 2, 3, 4], [5, 6, 7, 8]])])
    assert instance.calls[0][0]["x"].shape == (2, 2, 2)
    assert response.outputs[0].shape == (2, 2, 2)


def test_input_reshape_without_batching():
    config = ModelConfig(
        name="m",
        inputs=(TensorConfig("x", FP32, (4,), reshape=(2, 2)),),
        outputs=(TensorConfig("y", FP32, (2, 2)),),
    )
    instance = Doubler(config)
    (response,) = instance.execute([_request([1, 2, 3, 4])])
    assert instance.calls[0][0]["x"].shape == (2, 2)
    np.testing.assert_array_equal(response.outputs[0].data, [[2, 4], [6, 8]])


def test_output_reshape_gives_the_declared_dims():
    config = ModelConfig(
        name="m",
        max_batch_size=4,
        inputs=(TensorConfig("x", FP32, (2, 2)),),
        outputs=(TensorConfig("y", FP32, (4,), reshape=(2, 2)),),
    )
    instance = Doubler(config)
    batch = [_request([[[1, 2], [3, 4]]]), _request([[[5, 6], [7, 8]], [[0, 0], [0, 1]]])]
    results = instance.execute(batch)
    assert [r.outputs[0].shape for r in results] == [(1, 4), (2, 4)]
    assert results[1].outputs[0].data.shape == (2, 4)
    np.testing.assert_array_equal(results[1].outputs[0].data, [[10, 12, 14, 16], [0, 0, 0, 2]])


def test_outputs_are_cast_to_the_declared_type():
    def float64_outputs(x, names):
        return [x.astype(np.float64) * 2 for _ in names]

    config = ModelConfig(
        name="m",
        max_batch_size=4,
        inputs=(TensorConfig("x", FP32, (3,)),),
        outputs=(TensorConfig("y", DataType.INT16, (3,)),),
    )
    (response,) = Doubler(config, outputs_override=float64_outputs).execute(
        [_request([[1.0, 2.0, 3.0]])]
    )
    (y,) = response.outputs
    assert y.datatype is DataType.INT16
    assert y.data.dtype == np.int16
    np.testing.assert_array_equal(y.data, [[2, 4, 6]])


@pytest.mark.parametrize(
    "make",
    [
        lambda x: np.array([["a", "b", "c"]] * x.shape[0], dtype=object),
        lambda x: np.array([["a", "b", "c"]] * x.shape[0]),  # numpy unicode
        lambda x: np.array([[b"a", b"b", b"c"]] * x.shape[0]),  # numpy bytes
    ],
)
def test_bytes_outputs_become_object_arrays_of_bytes(make):
    config = ModelConfig(
        name="m",
        max_batch_size=4,
        inputs=(TensorConfig("x", FP32, (3,)),),
        outputs=(TensorConfig("s", DataType.BYTES, (3,)),),
    )
    instance = Doubler(config, outputs_override=lambda x, names: [make(x)])
    (response,) = instance.execute([_request([[1, 2, 3], [4, 5, 6]])])
    (s,) = response.outputs
    assert s.data.dtype == object
    assert s.shape == (2, 3)
    assert s.data.tolist() == [[b"a", b"b", b"c"], [b"a", b"b", b"c"]]


def test_unbatched_model_returns_what_the_runtime_returns():
    config = ModelConfig(
        name="m",
        inputs=(TensorConfig("x", FP32, (3,)),),
        outputs=(TensorConfig("y", FP32, (3,)),),
    )
    (response,) = Doubler(config).execute([_request([1, 2, 3])])
    assert response.outputs[0].shape == (3,)
    np.testing.assert_array_equal(response.outputs[0].data, [2, 4, 6])


def test_unbatched_model_runs_each_request_of_a_batch_alone():
    config = ModelConfig(
        name="m",
        inputs=(TensorConfig("x", FP32, (-1,)),),
        outputs=(TensorConfig("y", FP32, (-1,)),),
    )
    first, second = _request([1, 2, 3, 4]), _request([5, 6, 7, 8])
    results = Doubler(config).execute([first, second])
    np.testing.assert_array_equal(results[0].outputs[0].data, [2, 4, 6, 8])
    np.testing.assert_array_equal(results[1].outputs[0].data, [10, 12, 14, 16])


def test_output_that_cannot_be_shaped_fails_only_its_request():
    def short_output_for_big_inputs(x, names):
        if (x > 100).any():
            return [np.zeros((x.shape[0], 3), np.float32)]  # 3 elements, not 4
        return [x.reshape(x.shape[0], 2, 2)]

    config = ModelConfig(
        name="m",
        max_batch_size=4,
        inputs=(TensorConfig("x", FP32, (4,)),),
        outputs=(TensorConfig("y", FP32, (4,), reshape=(2, 2)),),
    )
    instance = Doubler(config, outputs_override=short_output_for_big_inputs)
    results = instance.execute([_request([[1, 2, 3, 4]]), _request([[101, 0, 0, 0]])])
    assert isinstance(results[0], InferResponse)
    assert isinstance(results[1], InferenceError)


def test_close_is_a_no_op_by_default():
    assert Doubler(BATCHED).close() is None


def test_run_is_abstract():
    with pytest.raises(TypeError):
        TensorModelInstance(BATCHED, 1)  # type: ignore[abstract]


def test_input_and_output_time_is_measured_apart_from_the_run():
    class Slow(Doubler):
        def run(self, feeds, output_names):
            time.sleep(0.02)  # the model's run: none of it may count as input or output
            return super().run(feeds, output_names)

    instance = Slow(BATCHED)
    assert instance.io_ns == (0, 0)
    for batch in ([_request([[1, 2, 3]])], [_request([[1, 1, 1]]), _request([[2, 2, 2]])]):
        started = time.perf_counter_ns()
        instance.execute(batch)
        total = time.perf_counter_ns() - started
        input_ns, output_ns = instance.io_ns
        assert input_ns > 0 and output_ns > 0  # concatenating, splitting, building responses
        assert input_ns + output_ns < total - 20_000_000
