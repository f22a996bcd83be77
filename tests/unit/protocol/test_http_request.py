import json

import numpy as np
import orjson
import pytest

from tidal.config import ModelConfig, TensorConfig
from tidal.core import DataType, ErrorCode, InferenceError, RequestedOutput
from tidal.protocol.http_request import decode_infer_request, decode_raw_binary_request
from tidal.protocol.tensor_bytes import serialize_bytes


def decode(header, binary=b"", *, model_version=None, with_length=None):
    head = header if isinstance(header, bytes) else orjson.dumps(header)
    if with_length is None:
        with_length = bool(binary)
    length = len(head) if with_length else None
    return decode_infer_request(head + binary, length, "m", model_version)


def one_input(**fields):
    return {"inputs": [{"name": "x", **fields}]}


def invalid(header, binary=b"", with_length=None) -> str:
    with pytest.raises(InferenceError) as info:
        decode(header, binary, with_length=with_length)
    assert info.value.code is ErrorCode.INVALID_ARG
    return info.value.message


def unparsable(header) -> str:
    """Data of the wrong JSON kind: Triton's 500 "Unable to parse 'data'" (INTERNAL)."""
    with pytest.raises(InferenceError) as info:
        decode(header)
    assert info.value.code is ErrorCode.INTERNAL
    assert info.value.message.startswith("Unable to parse 'data': input 'x' is ")
    return info.value.message


# -- JSON data ----------------------------------------------------------------------------------

JSON_CASES = [
    (DataType.BOOL, [True, False, True], [True, False, True]),
    (DataType.UINT8, [0, 7, 255], [0, 7, 255]),
    (DataType.UINT16, [0, 1, 65535], [0, 1, 65535]),
    (DataType.UINT32, [0, 1, 4294967295], [0, 1, 4294967295]),
    (DataType.UINT64, [0, 1, 18446744073709551615], [0, 1, 18446744073709551615]),
    (DataType.INT8, [-128, 0, 127], [-128, 0, 127]),
    (DataType.INT16, [-32768, 0, 32767], [-32768, 0, 32767]),
    (DataType.INT32, [-2147483648, 0, 2147483647], [-2147483648, 0, 2147483647]),
    (
        DataType.INT64,
        [-9223372036854775808, 0, 9223372036854775807],
        [-9223372036854775808, 0, 9223372036854775807],
    ),
    (DataType.FP32, [1.5, -0.25, 3], [1.5, -0.25, 3.0]),
    (DataType.FP64, [0.1, -1e300, 2], [0.1, -1e300, 2.0]),
    (DataType.BYTES, ["abc", "", "\u00e9"], [b"abc", b"", "\u00e9".encode()]),
]


@pytest.mark.parametrize(("datatype", "data", "expected"), JSON_CASES)
def test_flat_json_data_for_every_json_datatype(datatype, data, expected):
    request = decode(one_input(datatype=datatype.value, shape=[3], data=data))
    (tensor,) = request.inputs
    assert tensor.name == "x"
    assert tensor.datatype is datatype
    assert tensor.shape == (3,)
    assert tensor.data.shape == (3,)
    assert tensor.data.dtype == datatype.numpy_dtype
    assert tensor.data.tolist() == expected


@pytest.mark.parametrize(("datatype", "data", "expected"), JSON_CASES)
def test_nested_json_data_for_every_json_datatype(datatype, data, expected):
    nested = [[data[0]], [data[1]], [data[2]]]
    request = decode(one_input(datatype=datatype.value, shape=[3, 1], data=nested))
    (tensor,) = request.inputs
    assert tensor.shape == (3, 1)
    assert tensor.data.tolist() == [[item] for item in expected]


def test_nested_data_is_read_in_row_major_order():
    data = [[1, 2, 3], [4, 5, 6]]
    (tensor,) = decode(one_input(datatype="INT32", shape=[2, 3], data=data)).inputs
    assert tensor.data.tolist() == data
    (tensor,) = decode(one_input(datatype="INT32", shape=[3, 2], data=data)).inputs
    assert tensor.data.tolist() == [[1, 2], [3, 4], [5, 6]]


def test_flat_data_takes_the_declared_shape():
    (tensor,) = decode(one_input(datatype="FP32", shape=[2, 2], data=[1, 2, 3, 4])).inputs
    assert tensor.data.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_nested_bytes_data():
    (tensor,) = decode(
        one_input(datatype="BYTES", shape=[2, 2], data=[["a", "b"], ["c", "d"]])
    ).inputs
    assert tensor.data.dtype == object
    assert tensor.data.tolist() == [[b"a", b"b"], [b"c", b"d"]]


def test_scalar_data_and_empty_shape():
    (tensor,) = decode(one_input(datatype="INT64", shape=[], data=5)).inputs
    assert tensor.shape == ()
    assert tensor.data.shape == ()
    assert tensor.data.item() == 5
    (tensor,) = decode(one_input(datatype="INT64", shape=[1], data=9)).inputs
    assert tensor.data.tolist() == [9]


def test_zero_element_tensor():
    (tensor,) = decode(one_input(datatype="FP32", shape=[0, 4], data=[])).inputs
    assert tensor.data.shape == (0, 4)
    assert tensor.data.dtype == np.float32


def test_input_parameters_are_kept():
    (tensor,) = decode(
        one_input(datatype="INT8", shape=[1], data=[1], parameters={"k": "v", "n": 2})
    ).inputs
    assert tensor.parameters == {"k": "v", "n": 2}


def test_request_fields():
    header = {
        "id": "req-7",
        "parameters": {"binary_data_output": True, "priority": 2},
        "inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [1]}],
    }
    request = decode(header, model_version=3)
    assert request.model_name == "m"
    assert request.model_version == 3
    assert request.id == "req-7"
    assert request.parameters == {"binary_data_output": True, "priority": 2}
    assert request.outputs is None


def test_numeric_id_becomes_text_and_missing_id_is_none():
    base = one_input(datatype="INT8", shape=[1], data=[1])
    assert decode({**base, "id": 12}).id == "12"
    assert decode(base).id is None


def test_requested_outputs():
    header = {
        **one_input(datatype="INT8", shape=[1], data=[1]),
        "outputs": [
            {"name": "a"},
            {"name": "b", "parameters": {"binary_data": True}},
            {"name": "c", "parameters": {"binary_data": False, "classification": 3, "x": 1}},
        ],
    }
    assert decode(header).outputs == [
        RequestedOutput("a", None, 0, {}),
        RequestedOutput("b", True, 0, {}),
        RequestedOutput("c", False, 3, {"x": 1}),
    ]


def test_empty_input_list_is_accepted_here():
    request = decode({"inputs": []})
    assert request.inputs == []


# -- binary data extension ----------------------------------------------------------------------


def test_binary_inputs_with_offsets():
    a = np.array([1.5, 2.5], np.float32)
    b = np.array([[1, 2], [3, 4]], np.int64)
    header = {
        "inputs": [
            {
                "name": "a",
                "datatype": "FP32",
                "shape": [2],
                "parameters": {"binary_data_size": 8, "keep": 1},
            },
            {"name": "j", "datatype": "INT8", "shape": [2], "data": [1, 2]},
            {
                "name": "b",
                "datatype": "INT64",
                "shape": [2, 2],
                "parameters": {"binary_data_size": 32},
            },
        ]
    }
    request = decode(header, a.tobytes() + b.tobytes())
    first, middle, last = request.inputs
    assert first.data.tolist() == [1.5, 2.5]
    assert first.parameters == {"keep": 1}
    assert middle.data.tolist() == [1, 2]
    assert last.shape == (2, 2)
    assert last.data.tolist() == [[1, 2], [3, 4]]
    assert last.parameters == {}


def test_binary_input_is_a_view_of_the_body():
    header = one_input(datatype="INT32", shape=[2], parameters={"binary_data_size": 8})
    (tensor,) = decode(header, np.array([5, 6], np.int32).tobytes()).inputs
    assert tensor.data.tolist() == [5, 6]
    assert not tensor.data.flags.owndata


@pytest.mark.parametrize("datatype", [DataType.FP16, DataType.BF16])
def test_fp16_and_bf16_travel_as_binary(datatype):
    raw = np.array([0x3C00, 0x4000], np.uint16).tobytes()
    header = one_input(datatype=datatype.value, shape=[2], parameters={"binary_data_size": 4})
    (tensor,) = decode(header, raw).inputs
    assert tensor.data.dtype == datatype.numpy_dtype
    if datatype is DataType.FP16:
        assert tensor.data.tolist() == [1.0, 2.0]
    else:
        assert tensor.data.tolist() == [0x3C00, 0x4000]


def test_binary_bytes_input():
    raw = serialize_bytes(np.array([b"hi", b""], dtype=object))
    header = one_input(datatype="BYTES", shape=[2], parameters={"binary_data_size": len(raw)})
    (tensor,) = decode(header, raw).inputs
    assert tensor.data.tolist() == [b"hi", b""]


def test_header_length_covering_the_whole_body():
    header = orjson.dumps(one_input(datatype="INT8", shape=[1], data=[4]))
    request = decode_infer_request(header, len(header), "m", None)
    assert request.inputs[0].data.tolist() == [4]


def test_zero_size_binary_input():
    header = one_input(datatype="FP32", shape=[0], parameters={"binary_data_size": 0})
    (tensor,) = decode(header, b"", with_length=True).inputs
    assert tensor.data.shape == (0,)


# -- errors -------------------------------------------------------------------------------------

INT8_1 = {"datatype": "INT8", "shape": [1], "data": [1]}


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (b"{not json", "failed to parse the request JSON"),
        (b"", "failed to parse the request JSON"),
        (b"[1, 2]", "the request body must be a JSON object"),
        (b'"text"', "the request body must be a JSON object"),
        ({}, "the request must have an 'inputs' list"),
        ({"inputs": {"name": "x"}}, "the request must have an 'inputs' list"),
        (
            {"inputs": [], "parameters": [1]},
            "request 'parameters' must be a JSON object",
        ),
        ({"inputs": ["x"]}, "each input must be an object with a 'name'"),
        ({"inputs": [{"datatype": "INT8"}]}, "each input must be an object with a 'name'"),
        ({"inputs": [{"name": 5}]}, "each input must be an object with a 'name'"),
        (
            one_input(datatype="INT8", data=[1]),
            "input 'x': 'shape' must be a list of non-negative integers, got None",
        ),
        (
            one_input(datatype="INT8", shape=3, data=[1]),
            "input 'x': 'shape' must be a list of non-negative integers, got 3",
        ),
        (
            one_input(datatype="INT8", shape=[-1], data=[1]),
            "input 'x': 'shape' must be a list of non-negative integers, got [-1]",
        ),
        (
            one_input(datatype="INT8", shape=[1.0], data=[1]),
            "input 'x': 'shape' must be a list of non-negative integers, got [1.0]",
        ),
        (
            one_input(datatype="INT8", shape=[True], data=[1]),
            "input 'x': 'shape' must be a list of non-negative integers, got [True]",
        ),
        (
            one_input(datatype="INT8", shape=["1"], data=[1]),
            "input 'x': 'shape' must be a list of non-negative integers, got ['1']",
        ),
        (one_input(shape=[1], data=[1]), "input 'x' has an unknown datatype None"),
        (
            one_input(datatype="FLOAT32", shape=[1], data=[1]),
            "input 'x' has an unknown datatype 'FLOAT32'",
        ),
        (
            one_input(datatype="fp32", shape=[1], data=[1]),
            "input 'x' has an unknown datatype 'fp32'",
        ),
        (one_input(datatype=7, shape=[1], data=[1]), "input 'x' has an unknown datatype 7"),
        (
            one_input(datatype=["FP32"], shape=[1], data=[1]),
            "input 'x' has an unknown datatype ['FP32']",
        ),
        (
            one_input(**INT8_1, parameters="p"),
            "input 'x' parameters must be a JSON object",
        ),
        (
            one_input(datatype="INT8", shape=[1]),
            "input 'x' has neither 'data' nor binary_data_size",
        ),
        (
            one_input(datatype="FP16", shape=[1], data=[1.0]),
            "input 'x': FP16 data must be sent as binary data (binary_data_size), "
            "JSON cannot carry it",
        ),
        (
            one_input(datatype="BF16", shape=[1], data=[1.0]),
            "input 'x': BF16 data must be sent as binary data (binary_data_size), "
            "JSON cannot carry it",
        ),
        (
            one_input(datatype="INT32", shape=[3], data=[[1], [2, 3]]),
            "input 'x': data cannot be read as INT32: ",
        ),
        (
            one_input(datatype="BYTES", shape=[3], data=[["a"], ["b", "c"]]),
            "input 'x': data cannot be read as BYTES: nested lists of different lengths",
        ),
        (
            one_input(datatype="BYTES", shape=[1], data=[1]),
            "input 'x': BYTES elements in JSON must be strings",
        ),
        (
            one_input(datatype="BYTES", shape=[1], data=[None]),
            "input 'x': BYTES elements in JSON must be strings",
        ),
        (
            one_input(datatype="INT32", shape=[2, 2], data=[1, 2, 3]),
            "input 'x': got 3 elements in 'data', but shape [2, 2] needs 4",
        ),
        (
            one_input(datatype="INT32", shape=[1], data=[1, 2]),
            "input 'x': got 2 elements in 'data', but shape [1] needs 1",
        ),
        (
            one_input(datatype="BYTES", shape=[0], data=["a"]),
            "input 'x': got 1 elements in 'data', but shape [0] needs 0",
        ),
        (
            {**one_input(**INT8_1), "outputs": {"name": "y"}},
            "'outputs' must be a list",
        ),
        (
            {**one_input(**INT8_1), "outputs": ["y"]},
            "each requested output must be an object with a 'name'",
        ),
        (
            {**one_input(**INT8_1), "outputs": [{"parameters": {}}]},
            "each requested output must be an object with a 'name'",
        ),
        (
            {**one_input(**INT8_1), "outputs": [{"name": "y", "parameters": []}]},
            "output 'y' parameters must be a JSON object",
        ),
        (
            {**one_input(**INT8_1), "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]},
            "output 'y': binary_data must be true or false",
        ),
        (
            {
                **one_input(**INT8_1),
                "outputs": [{"name": "y", "parameters": {"binary_data": "true"}}],
            },
            "output 'y': binary_data must be true or false",
        ),
        (
            {
                **one_input(**INT8_1),
                "outputs": [{"name": "y", "parameters": {"classification": -1}}],
            },
            "output 'y': classification must be a non-negative integer",
        ),
        (
            {
                **one_input(**INT8_1),
                "outputs": [{"name": "y", "parameters": {"classification": "3"}}],
            },
            "output 'y': classification must be a non-negative integer",
        ),
        (
            {
                **one_input(**INT8_1),
                "outputs": [{"name": "y", "parameters": {"classification": 2.5}}],
            },
            "output 'y': classification must be a non-negative integer",
        ),
    ],
)
def test_invalid_json_requests(header, fragment):
    message = invalid(header)
    assert message.startswith(fragment)
    if not fragment.endswith(": "):
        assert message == fragment or fragment.startswith("failed to parse")


def _binary_header(size, datatype="INT32", shape=(2,)):
    return one_input(datatype=datatype, shape=list(shape), parameters={"binary_data_size": size})


@pytest.mark.parametrize(
    ("header", "binary", "message"),
    [
        (
            _binary_header("8"),
            b"\x00" * 8,
            "input 'x': binary_data_size must be an integer",
        ),
        (
            _binary_header(True),
            b"\x00" * 8,
            "input 'x': binary_data_size must be an integer",
        ),
        (
            _binary_header(-8),
            b"\x00" * 8,
            "input 'x': binary_data_size must be an integer",
        ),
        (
            _binary_header(8.0),
            b"\x00" * 8,
            "input 'x': binary_data_size must be an integer",
        ),
        (
            _binary_header(12),
            b"\x00" * 8,
            "input 'x': binary_data_size 12 runs past the end of the request body (8 bytes left)",
        ),
        (
            _binary_header(4),
            b"\x00" * 4,
            "input 'x': got 4 bytes of tensor data, but shape [2] of INT32 needs 8",
        ),
        (
            _binary_header(8),
            b"\x00" * 10,
            "the request carries 10 bytes of binary data after the JSON header, but its "
            "inputs' binary_data_size add up to 8",
        ),
        (
            one_input(datatype="INT8", shape=[1], data=[1]),
            b"\x00",
            "the request carries 1 bytes of binary data after the JSON header, but its "
            "inputs' binary_data_size add up to 0",
        ),
        (
            _binary_header(6, datatype="BYTES", shape=[1]),
            b"\x09\x00\x00\x00ab",
            "input 'x': BYTES element of 9 bytes runs past the tensor data",
        ),
    ],
)
def test_invalid_binary_requests(header, binary, message):
    assert invalid(header, binary) == message


def test_second_binary_input_running_past_the_body():
    header = {
        "inputs": [
            {"name": "a", "datatype": "INT8", "shape": [2], "parameters": {"binary_data_size": 2}},
            {"name": "b", "datatype": "INT8", "shape": [2], "parameters": {"binary_data_size": 2}},
        ]
    }
    assert invalid(header, b"\x01\x02\x03") == (
        "input 'b': binary_data_size 2 runs past the end of the request body (1 bytes left)"
    )


@pytest.mark.parametrize("length", [-1, 1000])
def test_header_length_outside_the_body(length):
    body = orjson.dumps(one_input(**INT8_1))
    with pytest.raises(InferenceError) as info:
        decode_infer_request(body, length, "m", None)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == (
        f"Inference-Header-Content-Length {length} is larger than the request body "
        f"({len(body)} bytes)"
    )


def test_header_length_cutting_the_json_short():
    body = orjson.dumps(one_input(**INT8_1))
    with pytest.raises(InferenceError) as info:
        decode_infer_request(body, len(body) - 1, "m", None)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message.startswith("failed to parse the request JSON")


# What real Triton 2.51 answered over HTTP JSON (a Python-backend model echoing its input):
# integer types take JSON integers only, signed within int64 and unsigned within uint64, and
# cast them to their width as C does; anything else is 500 "Unable to parse 'data': ...".
INT64_RANGE = "integers in the int64 range"
UINT64_RANGE = "integers in the uint64 range"


@pytest.mark.parametrize(
    ("datatype", "value", "wanted"),
    [
        ("INT32", 1.5, INT64_RANGE),
        ("UINT16", 0.5, UINT64_RANGE),
        ("INT32", 2.0, INT64_RANGE),
        ("INT8", 3.0, INT64_RANGE),
        ("UINT8", 1e2, UINT64_RANGE),
        ("INT32", True, INT64_RANGE),
        ("INT64", "12", INT64_RANGE),
        ("INT32", {"a": 1}, INT64_RANGE),
        ("UINT8", -1, UINT64_RANGE),
        ("UINT64", -1, UINT64_RANGE),
        ("UINT64", 2**64, UINT64_RANGE),
        ("INT64", 2**63, INT64_RANGE),
        ("INT32", -(2**63) - 1, INT64_RANGE),
        ("FP32", False, "numbers"),
        ("FP32", "1.5", "numbers"),
        ("FP32", "abc", "numbers"),
        ("FP32", None, "numbers"),
        ("BOOL", "abc", "true or false"),
        ("BOOL", 2, "true or false"),
        ("BOOL", 1.0, "true or false"),
    ],
)
def test_json_values_of_the_wrong_kind_are_unparsable_as_in_triton(datatype, value, wanted):
    header = json.dumps(one_input(datatype=datatype, shape=[1], data=[value])).encode()
    assert unparsable(header) == (
        f"Unable to parse 'data': input 'x' is {datatype}, whose JSON data must be {wanted}"
    )


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("INT8", [300, -129, 127, 128], [44, 127, 127, -128]),
        ("UINT8", [256, 255, 257], [0, 255, 1]),
        ("INT32", [2**40, 2**63 - 1, -(2**63)], [0, -1, 0]),
        ("UINT32", [4294967296, 2**63], [0, 0]),
        ("UINT64", [18446744073709551615, 0], [18446744073709551615, 0]),
        ("INT16", [40000], [-25536]),
    ],
)
def test_integers_past_their_type_wrap_as_in_triton(datatype, data, expected):
    header = json.dumps(one_input(datatype=datatype, shape=[len(data)], data=data)).encode()
    (tensor,) = decode(header).inputs
    assert tensor.data.tolist() == expected
    assert tensor.data.dtype == DataType(datatype).numpy_dtype


@pytest.mark.parametrize(("value", "expected"), [(1e39, np.inf), (-1e39, -np.inf), (1e-50, 0.0)])
def test_fp32_past_its_range_is_an_infinity_as_in_triton(value, expected):
    (tensor,) = decode(one_input(datatype="FP32", shape=[2], data=[value, 1])).inputs
    assert tensor.data.dtype == np.float32
    assert tensor.data.tolist() == [expected, 1.0]


@pytest.mark.parametrize(
    ("datatype", "data"),
    [("FP32", [[0.5, True]]), ("INT32", [[2, 7, False]]), ("FP64", [[0.25, 1.5], [True, 3.5]])],
)
def test_true_and_false_among_numbers_are_invalid(datatype, data):
    shape = [len(data), len(data[0])]
    unparsable(one_input(datatype=datatype, shape=shape, data=data))


def test_zeros_and_ones_are_numbers():
    request = decode(one_input(datatype="FP32", shape=[1, 3], data=[[0.0, 1, 0.5]]))
    np.testing.assert_array_equal(request.inputs[0].data, [[0.0, 1.0, 0.5]])


@pytest.mark.parametrize(
    ("datatype", "value", "expected"),
    [
        ("UINT64", 18446744073709551615, 18446744073709551615),
        ("FP32", 2, 2.0),
        ("FP64", -7, -7.0),
    ],
)
def test_json_numbers_that_convert_exactly_are_accepted(datatype, value, expected):
    (tensor,) = decode(one_input(datatype=datatype, shape=[1], data=[value])).inputs
    assert tensor.data.tolist() == [expected]
    assert tensor.data.dtype == DataType(datatype).numpy_dtype


@pytest.mark.parametrize("data", [[1, True], [False, 2], [[1, 2], [3, True]]])
def test_boolean_mixed_with_integers_is_invalid(data):
    shape = [2, 2] if isinstance(data[0], list) else [2]
    unparsable(one_input(datatype="INT32", shape=shape, data=data))


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_boolean_mixed_with_numbers_is_invalid_for_floats(datatype):
    unparsable(one_input(datatype=datatype, shape=[2], data=[1, True]))


def test_data_and_binary_data_size_together_are_invalid():
    header = one_input(datatype="INT8", shape=[1], data=[1], parameters={"binary_data_size": 1})
    assert invalid(header, b"\x01") == (
        "input 'x' has both 'data' and binary_data_size: send one or the other"
    )


def test_boolean_classification_is_invalid():
    header = {
        **one_input(**INT8_1),
        "outputs": [{"name": "y", "parameters": {"classification": True}}],
    }
    assert invalid(header) == "output 'y': classification must be a non-negative integer"


# -- raw binary form ----------------------------------------------------------------------------


def _config(dims, datatype=DataType.FP32, max_batch_size=0, inputs=None):
    return ModelConfig(
        name="m",
        max_batch_size=max_batch_size,
        inputs=inputs or (TensorConfig("x", datatype, tuple(dims)),),
        outputs=(TensorConfig("y", datatype, tuple(dims)),),
    )


def test_raw_binary_fixed_shape():
    body = np.array([1, 2, 3, 4], np.float32).tobytes()
    request = decode_raw_binary_request(body, _config((2, 2)), 5)
    assert request.model_name == "m"
    assert request.model_version == 5
    assert request.parameters == {"binary_data_output": True}
    assert request.outputs is None
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", DataType.FP32, (2, 2))
    assert tensor.data.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_raw_binary_variable_dimension_is_worked_out_from_the_size():
    body = np.arange(6, dtype=np.int16).tobytes()
    request = decode_raw_binary_request(body, _config((-1, 2), DataType.INT16), None)
    assert request.model_version is None
    assert request.inputs[0].shape == (3, 2)
    assert request.inputs[0].data.tolist() == [[0, 1], [2, 3], [4, 5]]


def test_raw_binary_for_a_batching_model_is_batch_one():
    body = np.arange(4, dtype=np.float32).tobytes()
    request = decode_raw_binary_request(body, _config((4,), max_batch_size=8), None)
    assert request.inputs[0].shape == (1, 4)
    assert request.inputs[0].data.shape == (1, 4)


def test_raw_binary_bytes_input_is_one_element():
    request = decode_raw_binary_request(b"\x00raw text", _config((1,), DataType.BYTES), None)
    (tensor,) = request.inputs
    assert tensor.datatype is DataType.BYTES
    assert tensor.shape == (1,)
    assert tensor.data.tolist() == [b"\x00raw text"]


def test_raw_binary_bytes_input_for_a_batching_model():
    config = _config((-1, -1), DataType.BYTES, max_batch_size=2)
    request = decode_raw_binary_request(b"abc", config, None)
    assert request.inputs[0].shape == (1, 1, 1)
    assert request.inputs[0].data.tolist() == [[[b"abc"]]]


def test_raw_binary_empty_body_with_variable_dimension():
    request = decode_raw_binary_request(b"", _config((-1,)), None)
    assert request.inputs[0].shape == (0,)


@pytest.mark.parametrize(
    ("config", "size", "message"),
    [
        (
            _config((2, 2)),
            32,
            "raw binary request for model 'm': input 'x' needs 16 bytes, got 32",
        ),
        (
            _config((2, 2)),
            12,
            "raw binary request for model 'm': 12 bytes do not fit input 'x' with dims "
            "[2, 2] of FP32",
        ),
        (
            _config((-1, 2)),
            12,
            "raw binary request for model 'm': 12 bytes do not fit input 'x' with dims "
            "[-1, 2] of FP32",
        ),
        (
            _config((-1, -1)),
            16,
            "raw binary request for model 'm': 16 bytes do not fit input 'x' with dims "
            "[-1, -1] of FP32",
        ),
        (
            _config(
                (1,),
                inputs=(
                    TensorConfig("a", DataType.FP32, (1,)),
                    TensorConfig("b", DataType.FP32, (1,)),
                ),
            ),
            4,
            "raw binary request body for model 'm' needs a model with exactly one input, it has 2",
        ),
    ],
)
def test_raw_binary_errors(config, size, message):
    with pytest.raises(InferenceError) as info:
        decode_raw_binary_request(b"\x00" * size, config, None)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == message


def test_nan_and_infinity_literals_are_read_for_floats_as_triton_does():
    body = (
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[3],"data":[NaN, Infinity, -Infinity]}]}'
    )
    request = decode_infer_request(body, None, "m", None)
    data = request.inputs[0].data
    assert np.isnan(data[0]) and data[1] == np.inf and data[2] == -np.inf


def test_nan_literal_is_invalid_for_integers():
    body = b'{"inputs":[{"name":"x","datatype":"INT32","shape":[2],"data":[NaN, 1]}]}'
    with pytest.raises(InferenceError) as info:
        decode_infer_request(body, None, "m", None)
    assert info.value.code is ErrorCode.INTERNAL  # Triton: 500, "Unable to parse 'data'"
    assert "INT32" in info.value.message


def test_special_float_words_inside_strings_are_left_alone():
    body = (
        b'{"id": "NaN-Infinity", "inputs":[{"name":"x","datatype":"FP32","shape":[2],'
        b'"data":[-Infinity, 2.5]}], "parameters": {"note": "a \\"NaN\\" here"}}'
    )
    request = decode_infer_request(body, None, "m", None)
    assert request.id == "NaN-Infinity"
    assert request.parameters == {"note": 'a "NaN" here'}
    assert request.inputs[0].data.tolist() == [-np.inf, 2.5]


def test_special_float_words_in_strings_without_escapes_are_left_alone():
    # no backslash anywhere: strings are told apart by counting quotes
    body = (
        b'{"id": "INPUT NaN Infinity", "inputs":[{"name":"IN","datatype":"FP64","shape":[4],'
        b'"data":[NaN, 1.5, -Infinity, Infinity]}], "parameters": {"Infinity": "-Infinity"}}'
    )
    request = decode_infer_request(body, None, "m", None)
    assert request.id == "INPUT NaN Infinity"
    assert request.parameters == {"Infinity": "-Infinity"}
    data = request.inputs[0].data
    assert np.isnan(data[0]) and data[1:].tolist() == [1.5, -np.inf, np.inf]


def test_a_body_that_is_not_json_names_the_fault_even_with_special_floats():
    with pytest.raises(InferenceError) as info:
        decode_infer_request(b'{"inputs": [NaN, }', None, "m", None)
    assert info.value.message.startswith("failed to parse the request JSON")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"[NaN, true]", ErrorCode.INTERNAL),
        (b'[NaN, "abc"]', ErrorCode.INTERNAL),
        (b"[[NaN], [1, 2]]", ErrorCode.INVALID_ARG),
    ],
)
def test_special_floats_beside_bad_values_are_still_refused(data, code):
    body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[2],"data":%b}]}' % data
    with pytest.raises(InferenceError) as info:
        decode_infer_request(body, None, "m", None)
    assert info.value.code is code
