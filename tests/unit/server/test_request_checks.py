import numpy as np
import pytest

from tidal.config import ModelConfig, TensorConfig
from tidal.core import DataType, ErrorCode, InferenceError, InferInput, InferRequest
from tidal.core import RequestedOutput as Out
from tidal.server.request_checks import check_request

FP32 = DataType.FP32

BATCHED = ModelConfig(
    name="m",
    max_batch_size=4,
    inputs=(
        TensorConfig("a", FP32, (3,)),
        TensorConfig("b", DataType.INT32, (-1, 2)),
        TensorConfig("opt", FP32, (1,), optional=True),
    ),
    outputs=(
        TensorConfig("scores", FP32, (3,)),
        TensorConfig("text", DataType.BYTES, (1,)),
        TensorConfig("flag", DataType.BOOL, (1,)),
        TensorConfig("count", DataType.INT64, (1,)),
        TensorConfig("raw", DataType.BF16, (1,)),
        TensorConfig("half", DataType.FP16, (1,)),
    ),
)

UNBATCHED = ModelConfig(
    name="u",
    inputs=(TensorConfig("x", FP32, (2, -1)),),
    outputs=(TensorConfig("y", FP32, (2, -1)),),
)


def tensor(name, shape, datatype=FP32):
    data = np.zeros(shape, dtype=datatype.numpy_dtype)
    return InferInput(name, datatype, tuple(shape), data)


def batched_request(batch=2, extra=(), outputs=None):
    inputs = [tensor("a", (batch, 3)), tensor("b", (batch, 5, 2), DataType.INT32), *extra]
    return InferRequest("m", inputs, outputs=outputs)


def rejected(request, config=BATCHED):
    with pytest.raises(InferenceError) as info:
        check_request(request, config)
    assert info.value.code is ErrorCode.INVALID_ARG
    return info.value.message


def test_valid_batched_request():
    assert check_request(batched_request(), BATCHED) is None


@pytest.mark.parametrize("batch", [1, 4])
def test_batch_sizes_at_the_limits(batch):
    check_request(batched_request(batch), BATCHED)


def test_optional_input_may_be_given():
    check_request(batched_request(extra=[tensor("opt", (2, 1))]), BATCHED)


def test_valid_unbatched_request_with_variable_dimension():
    check_request(InferRequest("u", [tensor("x", (2, 7))]), UNBATCHED)
    check_request(InferRequest("u", [tensor("x", (2, 0))]), UNBATCHED)


def test_input_order_does_not_matter():
    request = batched_request()
    request.inputs.reverse()
    check_request(request, BATCHED)


def test_unknown_input():
    request = batched_request(extra=[tensor("c", (2, 1))])
    assert rejected(request) == "unexpected inference input 'c' for model 'm'"


def test_duplicate_input():
    request = batched_request(extra=[tensor("a", (2, 3))])
    assert rejected(request) == "input 'a' appears more than once in the request for model 'm'"


def test_wrong_datatype():
    request = InferRequest("m", [tensor("a", (2, 3), DataType.FP64), tensor("b", (2, 1, 2))])
    assert rejected(request) == (
        "inference input 'a' data-type is 'FP64', but model 'm' expects 'FP32'"
    )


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 4), "unexpected shape for input 'a' for model 'm'. Expected [-1,3], got [2,4]"),
        ((3,), "unexpected shape for input 'a' for model 'm'. Expected [-1,3], got [3]"),
        ((2, 3, 1), "unexpected shape for input 'a' for model 'm'. Expected [-1,3], got [2,3,1]"),
    ],
)
def test_wrong_shape_for_a_batched_model(shape, message):
    request = InferRequest("m", [tensor("a", shape), tensor("b", (2, 1, 2), DataType.INT32)])
    assert rejected(request) == message


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((3, 2), "unexpected shape for input 'x' for model 'u'. Expected [2,-1], got [3,2]"),
        ((1, 2, 2), "unexpected shape for input 'x' for model 'u'. Expected [2,-1], got [1,2,2]"),
        ((), "unexpected shape for input 'x' for model 'u'. Expected [2,-1], got []"),
    ],
)
def test_wrong_shape_for_an_unbatched_model(shape, message):
    assert rejected(InferRequest("u", [tensor("x", shape)]), UNBATCHED) == message


def test_missing_required_input():
    request = InferRequest("m", [tensor("a", (2, 3))])
    assert rejected(request) == (
        "expected 3 inputs but got 1 inputs for model 'm': missing required input(s) ['b']"
    )


def test_no_inputs_at_all():
    assert rejected(InferRequest("m", [])) == (
        "expected 3 inputs but got 0 inputs for model 'm': missing required input(s) ['a', 'b']"
    )


def test_inputs_must_share_a_batch_size():
    request = InferRequest("m", [tensor("a", (2, 3)), tensor("b", (3, 1, 2), DataType.INT32)])
    assert rejected(request) == (
        "inputs of a request for model 'm' must share one batch size, got [2, 3]"
    )


@pytest.mark.parametrize("batch", [0, 5, 100])
def test_batch_size_out_of_range(batch):
    assert rejected(batched_request(batch)) == (
        f"inference request batch-size must be <= 4 for 'm', got {batch}"
    )


def test_unknown_requested_output():
    request = batched_request(outputs=[Out("scores"), Out("nope")])
    assert rejected(request) == "unexpected inference output 'nope' for model 'm'"


@pytest.mark.parametrize("name", ["scores", "count", "half"])
def test_numeric_outputs_can_be_classified(name):
    check_request(batched_request(outputs=[Out(name, classification=2)]), BATCHED)


@pytest.mark.parametrize(
    ("name", "datatype"), [("text", "BYTES"), ("flag", "BOOL"), ("raw", "BF16")]
)
def test_non_numeric_outputs_cannot_be_classified(name, datatype):
    request = batched_request(outputs=[Out(name, classification=1)])
    assert rejected(request) == (
        f"output '{name}' of model 'm' has datatype {datatype}, which cannot be classified"
    )


def test_non_numeric_outputs_without_classification_are_fine():
    check_request(batched_request(outputs=[Out("text"), Out("flag"), Out("raw")]), BATCHED)


def test_unknown_input_is_reported_before_missing_ones():
    request = InferRequest("m", [tensor("zzz", (2, 3))])
    assert rejected(request) == "unexpected inference input 'zzz' for model 'm'"
