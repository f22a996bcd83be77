import numpy as np
import pytest

from tidal.core import DataType, InferOutput
from tidal.server.classification import classify

LABELS = ["cat", "dog", "bird", "fish"]


def scores(values, datatype=DataType.FP32, parameters=None):
    data = np.asarray(values, dtype=datatype.numpy_dtype)
    return InferOutput("probs", datatype, data.shape, data, parameters or {})


def texts(output):
    return output.data.tolist()


def test_top_one_with_label():
    result = classify(scores([0.1, 0.05, 0.875, 0.2]), 1, LABELS, batching=False)
    assert result.name == "probs"
    assert result.datatype is DataType.BYTES
    assert result.shape == (1,)
    assert result.data.dtype == object
    assert texts(result) == [b"0.875000:2:bird"]


def test_top_k_is_best_first():
    result = classify(scores([0.1, 0.05, 0.875, 0.2]), 3, LABELS, batching=False)
    assert texts(result) == [b"0.875000:2:bird", b"0.200000:3:fish", b"0.100000:0:cat"]


def test_ties_keep_the_lower_index_first():
    result = classify(scores([0.25, 0.5, 0.5, 0.5]), 3, LABELS, batching=False)
    assert texts(result) == [b"0.500000:1:dog", b"0.500000:2:bird", b"0.500000:3:fish"]


def test_k_larger_than_the_classes_gives_every_class():
    result = classify(scores([0.3, 0.7]), 10, LABELS, batching=False)
    assert result.shape == (2,)
    assert texts(result) == [b"0.700000:1:dog", b"0.300000:0:cat"]


def test_missing_labels_leave_the_label_out():
    result = classify(scores([0.1, 0.2, 0.3, 0.4, 0.9, 0.0]), 2, LABELS, batching=False)
    assert texts(result) == [b"0.900000:4", b"0.400000:3:fish"]
    result = classify(scores([0.1, 0.9]), 2, [], batching=False)
    assert texts(result) == [b"0.900000:1", b"0.100000:0"]


def test_batch_gives_k_classes_per_item():
    result = classify(
        scores([[0.1, 0.9, 0.0, 0.0], [0.6, 0.1, 0.3, 0.0], [0.0, 0.0, 0.0, 1.0]]),
        2,
        LABELS,
        batching=True,
    )
    assert result.shape == (3, 2)
    assert texts(result) == [
        [b"0.900000:1:dog", b"0.100000:0:cat"],
        [b"0.600000:0:cat", b"0.300000:2:bird"],
        [b"1.000000:3:fish", b"0.000000:0:cat"],
    ]


def test_batch_items_with_extra_dimensions_are_flattened():
    result = classify(scores([[[1, 2], [3, 4]]]), 2, [], batching=True)
    assert result.shape == (1, 2)
    assert texts(result) == [[b"4.000000:3", b"3.000000:2"]]


def test_unbatched_tensor_is_one_row_whatever_its_rank():
    result = classify(scores([[0.2, 0.1], [0.4, 0.3]]), 3, [], batching=False)
    assert result.shape == (3,)
    assert texts(result) == [b"0.400000:2", b"0.300000:3", b"0.200000:0"]


def test_k_larger_than_classes_in_a_batch():
    result = classify(scores([[0.5, 0.25], [0.0, 1.0]]), 5, ["a", "b"], batching=True)
    assert result.shape == (2, 2)
    assert texts(result) == [
        [b"0.500000:0:a", b"0.250000:1:b"],
        [b"1.000000:1:b", b"0.000000:0:a"],
    ]


@pytest.mark.parametrize(
    "datatype",
    [
        DataType.INT8,
        DataType.INT16,
        DataType.INT32,
        DataType.INT64,
        DataType.UINT8,
        DataType.UINT16,
        DataType.UINT32,
        DataType.UINT64,
    ],
)
def test_integer_scores_print_as_integers(datatype):
    result = classify(scores([3, 1, 3, 7], datatype), 3, LABELS, batching=False)
    assert texts(result) == [b"7:3:fish", b"3:0:cat", b"3:2:bird"]


def test_negative_integer_scores():
    result = classify(scores([-5, -1, -3], DataType.INT32), 3, [], batching=False)
    assert texts(result) == [b"-1:1", b"-3:2", b"-5:0"]


def test_large_uint64_scores_keep_their_digits():
    big = 18446744073709551615
    result = classify(scores([1, big], DataType.UINT64), 1, [], batching=False)
    assert texts(result) == [f"{big}:1".encode()]


@pytest.mark.parametrize("datatype", [DataType.FP16, DataType.FP64])
def test_other_float_types_print_like_c_percent_f(datatype):
    result = classify(scores([0.5, 0.125, 1e-7], datatype), 3, [], batching=False)
    assert texts(result) == [b"0.500000:0", b"0.125000:1", b"0.000000:2"]


def test_large_and_negative_floats():
    result = classify(scores([-2.5, 1234.5, 0.0], DataType.FP64), 3, [], batching=False)
    assert texts(result) == [b"1234.500000:1", b"0.000000:2", b"-2.500000:0"]


def test_output_parameters_are_copied():
    parameters = {"p": 1}
    result = classify(scores([1.0], parameters=parameters), 1, [], batching=False)
    assert result.parameters == {"p": 1}
    assert result.parameters is not parameters
