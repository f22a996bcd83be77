"""The pure gRPC codecs: ``ModelInferRequest`` -> core request, core results -> messages."""

from __future__ import annotations

import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from tidal.core.datatypes import DataType
from tidal.core.errors import ErrorCode, InferenceError
from tidal.core.metadata import RepositoryEntry
from tidal.core.types import InferOutput, InferResponse
from tidal.protocol.grpc_request import (
    CONTENTS_FIELD,
    decode_infer_request,
    decode_load_parameters,
    decode_parameters,
    parse_version,
)
from tidal.protocol.grpc_response import (
    encode_infer_response,
    encode_parameters,
    repository_index_response,
    statistics_response,
    stream_error,
)
from tidal.protocol.tensor_bytes import serialize_bytes
from tidal.scheduling.statistics import ModelStatistics


def _request(*inputs: pb.ModelInferRequest.InferInputTensor, raw=(), **fields):
    return pb.ModelInferRequest(model_name="m", inputs=inputs, raw_input_contents=raw, **fields)


def _tensor(name="X", datatype="FP32", shape=(2, 2), **fields):
    return pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=shape, **fields
    )


def _invalid(message: pb.ModelInferRequest) -> str:
    with pytest.raises(InferenceError) as caught:
        decode_infer_request(message)
    assert caught.value.code is ErrorCode.INVALID_ARG
    return caught.value.message


# ----------------------------------------------------------------------------- requests


def test_raw_contents_become_arrays_without_copy():
    data = np.arange(4, dtype=np.float32).reshape(2, 2)
    request = decode_infer_request(_request(_tensor(), raw=[data.tobytes()], id="r1"))
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("X", DataType.FP32, (2, 2))
    np.testing.assert_array_equal(tensor.data, data)
    assert not tensor.data.flags.owndata  # a view over the message's bytes
    assert request.id == "r1"
    assert request.model_version is None
    assert request.outputs is None


def test_bytes_raw_contents_use_the_length_prefix():
    items = [b"a", b"", b"\x00\xff"]
    request = decode_infer_request(
        _request(_tensor(datatype="BYTES", shape=(3,)), raw=[serialize_bytes(np.array(items))])
    )
    assert request.inputs[0].data.tolist() == items


@pytest.mark.parametrize("datatype", sorted(CONTENTS_FIELD, key=lambda d: d.value))
def test_typed_contents_for_every_datatype_with_a_field(datatype):
    field = CONTENTS_FIELD[datatype]
    if datatype is DataType.BYTES:
        values = [b"x", b"yz", b"", b"\x01"]
    elif datatype is DataType.BOOL:
        values = [True, False, False, True]
    elif datatype in (DataType.FP32, DataType.FP64):
        values = [0.5, -1.25, 3.0, 1e10]
    else:
        info = np.iinfo(datatype.numpy_dtype)
        values = [int(info.min), int(info.max), 0, 1]
    contents = pb.InferTensorContents(**{field: values})
    request = decode_infer_request(_request(_tensor(datatype=datatype.value, contents=contents)))
    data = request.inputs[0].data
    assert data.shape == (2, 2)
    if datatype is DataType.BYTES:
        assert data.ravel().tolist() == values
    else:
        assert data.dtype == datatype.numpy_dtype
        assert data.ravel().tolist() == values


def test_version_parameters_and_outputs():
    outputs = [
        pb.ModelInferRequest.InferRequestedOutputTensor(name="A"),
        pb.ModelInferRequest.InferRequestedOutputTensor(name="B"),
    ]
    outputs[1].parameters["classification"].int64_param = 3
    outputs[1].parameters["binary_data"].bool_param = True
    message = _request(_tensor(), raw=[bytes(16)], model_version="7", outputs=outputs)
    message.parameters["priority"].uint64_param = 2
    message.parameters["tag"].string_param = "x"
    request = decode_infer_request(message)
    assert request.model_version == 7
    assert request.parameters == {"priority": 2, "tag": "x"}
    assert [(o.name, o.classification, o.parameters) for o in request.outputs] == [
        ("A", 0, {}),
        ("B", 3, {}),
    ]


def test_decode_parameters_reads_every_kind():
    message = pb.ModelInferRequest()
    message.parameters["b"].bool_param = False
    message.parameters["i"].int64_param = -3
    message.parameters["u"].uint64_param = 2**64 - 1
    message.parameters["d"].double_param = 0.5
    message.parameters["s"].string_param = "t"
    assert decode_parameters(message.parameters) == {
        "b": False,
        "i": -3,
        "u": 2**64 - 1,
        "d": 0.5,
        "s": "t",
    }


@pytest.mark.parametrize(("text", "expected"), [("", None), ("0", 0), ("12", 12)])
def test_parse_version(text, expected):
    assert parse_version("m", text) == expected


@pytest.mark.parametrize("text", ["-1", "x", "1.0", "\u0663"])
def test_parse_version_rejects_non_numbers(text):
    with pytest.raises(InferenceError, match="non-negative integer"):
        parse_version("m", text)


def test_wrong_raw_size_names_input_and_sizes():
    message = _invalid(_request(_tensor(), raw=[bytes(15)]))
    assert "'X'" in message and "15" in message and "16" in message


def test_raw_and_typed_contents_together_are_refused():
    contents = pb.InferTensorContents(fp32_contents=[1, 2, 3, 4])
    assert "both" in _invalid(_request(_tensor(contents=contents), raw=[bytes(16)]))


def test_raw_contents_must_cover_every_input():
    message = _invalid(_request(_tensor(), _tensor(name="Y"), raw=[bytes(16)]))
    assert "2 inputs" in message and "1 raw_input_contents" in message


def test_typed_contents_in_the_wrong_field():
    contents = pb.InferTensorContents(int_contents=[1, 2, 3, 4])
    message = _invalid(_request(_tensor(contents=contents)))
    assert "fp32_contents" in message and "int_contents" in message


def test_typed_contents_count_must_match_shape():
    contents = pb.InferTensorContents(fp32_contents=[1, 2, 3])
    message = _invalid(_request(_tensor(contents=contents)))
    assert "3 elements" in message and "needs 4" in message


def test_missing_data_is_an_empty_typed_contents():
    assert "got 0 elements" in _invalid(_request(_tensor()))


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_half_types_have_no_typed_field(datatype):
    message = _invalid(_request(_tensor(datatype=datatype)))
    assert "raw_input_contents" in message


def test_narrow_integers_are_range_checked():
    contents = pb.InferTensorContents(int_contents=[1, 2, 300, 4])
    assert "out of range for INT8" in _invalid(
        _request(_tensor(datatype="INT8", contents=contents))
    )


def test_unknown_datatype_and_negative_shape():
    assert "unknown datatype 'FP8'" in _invalid(_request(_tensor(datatype="FP8")))
    assert "non-negative" in _invalid(_request(_tensor(shape=(-1, 2)), raw=[b""]))


def test_bad_classification_parameter():
    output = pb.ModelInferRequest.InferRequestedOutputTensor(name="A")
    output.parameters["classification"].string_param = "3"
    assert "classification" in _invalid(_request(_tensor(), raw=[bytes(16)], outputs=[output]))


def test_shared_memory_is_unsupported():
    tensor = _tensor()
    tensor.parameters["shared_memory_region"].string_param = "r"
    with pytest.raises(InferenceError) as caught:
        decode_infer_request(_request(tensor))
    assert caught.value.code is ErrorCode.UNSUPPORTED


# ----------------------------------------------------------------------------- responses


def test_encode_response_raw_contents_and_parameters():
    data = np.arange(6, dtype=np.int32).reshape(2, 3)
    words = np.array([b"ab", b""], dtype=object)
    response = InferResponse(
        "m",
        3,
        [
            InferOutput("A", DataType.INT32, (2, 3), data),
            InferOutput("B", DataType.BYTES, (2,), words, {"note": "x"}),
        ],
        id="q",
        parameters={"flag": True, "count": 2, "ratio": 0.5, "big": 2**64 - 1},
    )
    message = encode_infer_response(response)
    assert (message.model_name, message.model_version, message.id) == ("m", "3", "q")
    assert [(o.name, o.datatype, list(o.shape)) for o in message.outputs] == [
        ("A", "INT32", [2, 3]),
        ("B", "BYTES", [2]),
    ]
    assert message.raw_output_contents[0] == data.tobytes()
    assert message.raw_output_contents[1] == b"\x02\x00\x00\x00ab\x00\x00\x00\x00"
    assert message.outputs[1].parameters["note"].string_param == "x"
    assert decode_parameters(message.parameters) == response.parameters
    assert message.parameters["big"].WhichOneof("parameter_choice") == "uint64_param"


def test_encode_parameters_keeps_bool_apart_from_int():
    message = pb.ModelInferResponse()
    encode_parameters(message.parameters, {"t": True, "n": np.int64(4), "o": [1]})
    assert message.parameters["t"].WhichOneof("parameter_choice") == "bool_param"
    assert message.parameters["n"].int64_param == 4
    assert message.parameters["o"].string_param == "[1]"


def test_stream_error_keeps_the_request_id():
    error = stream_error("bad", pb.ModelInferRequest(model_name="m", model_version="2", id="7"))
    assert error.error_message == "bad"
    assert (error.infer_response.id, error.infer_response.model_name) == ("7", "m")


def test_statistics_follow_the_json_view():
    stats = ModelStatistics()
    message = statistics_response([("m", 1, stats)])
    (entry,) = message.model_stats
    assert (entry.name, entry.version, entry.inference_count) == ("m", "1", 0)


def test_repository_index():
    message = repository_index_response(
        [RepositoryEntry("a", "1", "READY", ""), RepositoryEntry("b")]
    )
    assert [(m.name, m.version, m.state) for m in message.models] == [
        ("a", "1", "READY"),
        ("b", "", ""),
    ]


def test_load_parameters():
    request = pb.RepositoryModelLoadRequest(model_name="m")
    request.parameters["config"].string_param = "{}"
    request.parameters["file:1/model.onnx"].bytes_param = b"\x01"
    assert decode_load_parameters("m", request.parameters) == (
        "{}",
        {"file:1/model.onnx": b"\x01"},
    )
    assert decode_load_parameters("m", {}) == (None, None)
    request.parameters["config"].bytes_param = b"{}"
    with pytest.raises(InferenceError, match="string_param"):
        decode_load_parameters("m", request.parameters)
    other = pb.RepositoryModelLoadRequest()
    other.parameters["colour"].string_param = "red"
    with pytest.raises(InferenceError, match="Unrecognized"):
        decode_load_parameters("m", other.parameters)
