import numpy as np
import orjson
import pytest

from tidal.core import (
    DataType,
    ErrorCode,
    InferenceError,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)
from tidal.protocol.http_response import EncodedResponse, encode_infer_response


def output(name, datatype, values, shape=None, parameters=None):
    if datatype is DataType.BYTES:
        data = np.empty(len(values), dtype=object)
        data[:] = values
    else:
        data = np.asarray(values, dtype=datatype.numpy_dtype)
    if shape is not None:
        data = data.reshape(shape)
    return InferOutput(name, datatype, data.shape, data, parameters or {})


def response(*outputs, response_id=None, parameters=None):
    return InferResponse("m", 2, list(outputs), id=response_id, parameters=parameters or {})


def request(outputs=None, **parameters):
    return InferRequest("m", [], outputs=outputs, parameters=parameters)


def test_json_output_exact_body():
    encoded = encode_infer_response(response(output("y", DataType.FP32, [1.5, -2])), request())
    assert encoded == EncodedResponse(
        b'{"model_name":"m","model_version":"2","outputs":'
        b'[{"name":"y","datatype":"FP32","shape":[2],"data":[1.5,-2.0]}]}',
        None,
    )


def test_id_and_parameters_are_included_when_set():
    encoded = encode_infer_response(
        response(output("y", DataType.INT8, [1]), response_id="r9", parameters={"a": 1}),
        request(),
    )
    assert orjson.loads(encoded.body) == {
        "model_name": "m",
        "model_version": "2",
        "id": "r9",
        "parameters": {"a": 1},
        "outputs": [{"name": "y", "datatype": "INT8", "shape": [1], "data": [1]}],
    }


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        (DataType.BOOL, [True, False]),
        (DataType.UINT8, [0, 255]),
        (DataType.UINT16, [0, 65535]),
        (DataType.UINT32, [0, 4294967295]),
        (DataType.UINT64, [0, 18446744073709551615]),
        (DataType.INT8, [-128, 127]),
        (DataType.INT16, [-32768, 32767]),
        (DataType.INT32, [-2147483648, 2147483647]),
        (DataType.INT64, [-9223372036854775808, 9223372036854775807]),
        (DataType.FP32, [0.5, -1.25]),
        (DataType.FP64, [0.1, 1e300]),
    ],
)
def test_json_data_for_every_numeric_datatype(datatype, values):
    encoded = encode_infer_response(response(output("y", datatype, values)), request())
    (out,) = orjson.loads(encoded.body)["outputs"]
    assert out == {"name": "y", "datatype": datatype.value, "shape": [2], "data": values}


def test_json_bytes_are_utf8_text():
    encoded = encode_infer_response(
        response(output("s", DataType.BYTES, [b"abc", "\u00e9".encode(), b""])), request()
    )
    (out,) = orjson.loads(encoded.body)["outputs"]
    assert out["data"] == ["abc", "\u00e9", ""]
    assert out["datatype"] == "BYTES"


def test_json_bytes_that_are_not_utf8_are_invalid():
    with pytest.raises(InferenceError) as info:
        encode_infer_response(response(output("s", DataType.BYTES, [b"\xff"])), request())
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == (
        "output 's' holds bytes that are not UTF-8 text: request it as binary data"
    )


def test_json_data_is_flat_in_row_major_order():
    transposed = np.arange(6, dtype=np.int32).reshape(2, 3).T
    out = InferOutput("y", DataType.INT32, transposed.shape, transposed)
    (encoded,) = orjson.loads(encode_infer_response(response(out), request()).body)["outputs"]
    assert encoded["shape"] == [3, 2]
    assert encoded["data"] == [0, 3, 1, 4, 2, 5]


def test_json_output_parameters_are_shown():
    out = output("y", DataType.INT8, [1], parameters={"p": "q"})
    (encoded,) = orjson.loads(encode_infer_response(response(out), request()).body)["outputs"]
    assert encoded["parameters"] == {"p": "q"}


def test_empty_json_output():
    out = output("y", DataType.FP32, [], shape=(0, 3))
    (encoded,) = orjson.loads(encode_infer_response(response(out), request()).body)["outputs"]
    assert (encoded["shape"], encoded["data"]) == ([0, 3], [])


@pytest.mark.parametrize("datatype", [DataType.FP16, DataType.BF16])
def test_fp16_and_bf16_cannot_be_json(datatype):
    out = output("h", datatype, [1, 2])
    with pytest.raises(InferenceError) as info:
        encode_infer_response(response(out), request())
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == (
        f"output 'h' is {datatype.value}, which can only be returned as binary data: "
        'request it with parameters {"binary_data": true}'
    )


@pytest.mark.parametrize("datatype", [DataType.FP16, DataType.BF16])
def test_fp16_and_bf16_as_binary(datatype):
    out = output("h", datatype, [1, 2])
    encoded = encode_infer_response(response(out), request([RequestedOutput("h", binary=True)]))
    assert encoded.body[encoded.header_length :] == out.data.tobytes()


def test_binary_output_layout():
    out = output("y", DataType.INT32, [1, -2])
    encoded = encode_infer_response(response(out), request([RequestedOutput("y", binary=True)]))
    header = encoded.body[: encoded.header_length]
    assert orjson.loads(header) == {
        "model_name": "m",
        "model_version": "2",
        "outputs": [
            {
                "name": "y",
                "datatype": "INT32",
                "shape": [2],
                "parameters": {"binary_data_size": 8},
            }
        ],
    }
    assert encoded.body[encoded.header_length :] == b"\x01\x00\x00\x00\xfe\xff\xff\xff"
    assert encoded.header_length == len(header) == encoded.body.index(b"}]}") + 3


def test_binary_output_keeps_its_parameters():
    out = output("y", DataType.UINT8, [7], parameters={"p": 1})
    encoded = encode_infer_response(response(out), request(binary_data_output=True))
    (header,) = orjson.loads(encoded.body[: encoded.header_length])["outputs"]
    assert header["parameters"] == {"p": 1, "binary_data_size": 1}
    assert "data" not in header


def test_binary_bytes_output_is_length_prefixed():
    out = output("s", DataType.BYTES, [b"ab", b"\xff"])
    encoded = encode_infer_response(response(out), request(binary_data_output=True))
    blob = b"\x02\x00\x00\x00ab\x01\x00\x00\x00\xff"
    assert encoded.body[encoded.header_length :] == blob
    (header,) = orjson.loads(encoded.body[: encoded.header_length])["outputs"]
    assert header["parameters"] == {"binary_data_size": len(blob)}


def _two_outputs():
    return response(output("a", DataType.INT8, [1, 2]), output("b", DataType.INT16, [3]))


def _kinds(encoded):
    header_bytes = (
        encoded.body if encoded.header_length is None else encoded.body[: encoded.header_length]
    )
    return {o["name"]: "data" in o for o in orjson.loads(header_bytes)["outputs"]}


def test_default_is_json():
    encoded = encode_infer_response(_two_outputs(), request())
    assert encoded.header_length is None
    assert _kinds(encoded) == {"a": True, "b": True}


def test_binary_data_output_makes_every_output_binary():
    encoded = encode_infer_response(_two_outputs(), request(binary_data_output=True))
    assert _kinds(encoded) == {"a": False, "b": False}
    assert encoded.body[encoded.header_length :] == b"\x01\x02\x03\x00"


def test_binary_data_output_false_is_json():
    encoded = encode_infer_response(_two_outputs(), request(binary_data_output=False))
    assert encoded.header_length is None


def test_per_output_choice_overrides_the_default():
    outputs = [RequestedOutput("a", binary=False), RequestedOutput("b")]
    encoded = encode_infer_response(_two_outputs(), request(outputs, binary_data_output=True))
    assert _kinds(encoded) == {"a": True, "b": False}
    assert encoded.body[encoded.header_length :] == b"\x03\x00"

    outputs = [RequestedOutput("a"), RequestedOutput("b", binary=True)]
    encoded = encode_infer_response(_two_outputs(), request(outputs))
    assert _kinds(encoded) == {"a": True, "b": False}


def test_binary_blobs_follow_in_output_order():
    outputs = [RequestedOutput("a", binary=True), RequestedOutput("b", binary=True)]
    encoded = encode_infer_response(_two_outputs(), request(outputs))
    assert encoded.body[encoded.header_length :] == b"\x01\x02" + b"\x03\x00"
    headers = orjson.loads(encoded.body[: encoded.header_length])["outputs"]
    assert [h["parameters"]["binary_data_size"] for h in headers] == [2, 2]


def test_response_without_outputs():
    encoded = encode_infer_response(response(), request())
    assert orjson.loads(encoded.body)["outputs"] == []
    assert encoded.header_length is None


# ------------------------------------------------------------- NaN and infinities in JSON


@pytest.mark.parametrize("datatype", [DataType.FP32, DataType.FP64])
def test_non_finite_floats_are_written_as_literals_as_triton_does(datatype):
    values = [float("nan"), float("inf"), float("-inf"), 1.0]
    encoded = encode_infer_response(
        response(output("y", datatype, values, shape=(2, 2)), response_id="r1"), request()
    )
    expected = (
        b'{"model_name":"m","model_version":"2","id":"r1","outputs":[{"name":"y","datatype":"'
        + datatype.value.encode()
        + b'","shape":[2,2],"data":[NaN,Infinity,-Infinity,1.0]}]}'
    )
    assert encoded == EncodedResponse(expected, None)
    assert b"null" not in encoded.body


def test_non_finite_floats_beside_other_outputs_and_binary_ones():
    special = output("y", DataType.FP32, [1.0, float("-inf")])
    plain = output("z", DataType.INT32, [3, 4])
    words = output("w", DataType.BYTES, [b"null", b"NaN"])
    blob = output("b", DataType.FP32, [float("nan")])
    wanted = [RequestedOutput("b", binary=True), RequestedOutput("y"), RequestedOutput("z")]
    wanted.append(RequestedOutput("w"))
    encoded = encode_infer_response(
        response(special, plain, words, blob, parameters={"p": "null"}), request(wanted)
    )
    assert encoded.header_length is not None
    header = encoded.body[: encoded.header_length]
    assert b'"data":[1.0,-Infinity]' in header
    assert b'"data":[3,4]' in header
    assert b'"data":["null","NaN"]' in header  # strings stay strings
    import json

    parsed = json.loads(header)  # Python's json reads the literals back
    assert parsed["parameters"] == {"p": "null"}
    assert [o["name"] for o in parsed["outputs"]] == ["y", "z", "w", "b"]
    assert parsed["outputs"][0]["data"][1] == float("-inf")
    assert np.isnan(np.frombuffer(encoded.body[encoded.header_length :], np.float32)).all()


def test_finite_floats_keep_the_fast_encoding():
    encoded = encode_infer_response(response(output("y", DataType.FP64, [0.1, 2.0])), request())
    assert b'"data":[0.1,2.0]' in encoded.body
