"""Successful inference over HTTP: JSON and binary tensors, every datatype, classification,
compression and the raw-binary request form."""

from __future__ import annotations

import gzip
import json
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from onnx import TensorProto

from .conftest import binary_body, deserialize_bytes, parse_binary_response, serialize_bytes
from .models import CLASSIFIER_LABELS, identity_model_name, identity_onnx, save_model

RNG = np.random.default_rng(20240611)

# ----------------------------------------------------------------------------- helpers


def _add_sub_data(dtype, batch):
    if np.issubdtype(dtype, np.integer):
        a = RNG.integers(-1000, 1000, size=(batch, 16), dtype=dtype)
        b = RNG.integers(-1000, 1000, size=(batch, 16), dtype=dtype)
    else:
        a = RNG.standard_normal((batch, 16)).astype(dtype)
        b = RNG.standard_normal((batch, 16)).astype(dtype)
    return a, b


def _inputs(arrays, datatype, binary):
    inputs = []
    for i, array in enumerate(arrays):
        inp = triton_http.InferInput(f"INPUT{i}", list(array.shape), datatype)
        inp.set_data_from_numpy(array, binary_data=binary)
        inputs.append(inp)
    return inputs


def _outputs(names, binary):
    return [triton_http.InferRequestedOutput(name, binary_data=binary) for name in names]


def _json_infer(http, model, body, **kwargs):
    response = http.post(f"/v2/models/{model}/infer", json=body, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def _outputs_by_name(body):
    return {output["name"]: output for output in body["outputs"]}


# ----------------------------------------------------------------------------- add_sub


@pytest.mark.parametrize(
    ("model", "datatype", "dtype"),
    [("add_sub_int32", "INT32", np.int32), ("add_sub_fp32", "FP32", np.float32)],
)
@pytest.mark.parametrize(("binary_in", "binary_out"), [(False, False), (True, True), (True, False)])
def test_add_sub_tritonclient(triton, model, datatype, dtype, binary_in, binary_out):
    a, b = _add_sub_data(dtype, 3)
    result = triton.infer(
        model,
        _inputs([a, b], datatype, binary_in),
        outputs=_outputs(["OUTPUT0", "OUTPUT1"], binary_out),
        request_id="req-42",
    )
    assert result.get_response()["id"] == "req-42"
    out0, out1 = result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")
    assert out0.dtype == dtype and out0.shape == (3, 16)
    np.testing.assert_array_equal(out0, a + b)
    np.testing.assert_array_equal(out1, a - b)


def test_add_sub_default_outputs_are_all_returned(triton):
    a, b = _add_sub_data(np.int32, 2)
    result = triton.infer("add_sub_int32", _inputs([a, b], "INT32", True))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_add_sub_mixed_json_and_binary_inputs_with_output_subset(triton):
    a, b = _add_sub_data(np.float32, 2)
    in0 = triton_http.InferInput("INPUT0", [2, 16], "FP32").set_data_from_numpy(a, False)
    in1 = triton_http.InferInput("INPUT1", [2, 16], "FP32").set_data_from_numpy(b, True)
    result = triton.infer("add_sub_fp32", [in0, in1], outputs=_outputs(["OUTPUT1"], True))
    assert result.as_numpy("OUTPUT0") is None
    assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_add_sub_with_explicit_version(triton):
    a, b = _add_sub_data(np.int32, 1)
    result = triton.infer("add_sub_int32", _inputs([a, b], "INT32", True), model_version="1")
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def test_add_sub_full_batch(triton):
    a, b = _add_sub_data(np.int32, 8)
    result = triton.infer("add_sub_int32", _inputs([a, b], "INT32", True))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def test_json_response_shape(http):
    a, b = _add_sub_data(np.int32, 2)
    body = {
        "id": "abc",
        "inputs": [
            {"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": a.ravel().tolist()},
            {"name": "INPUT1", "shape": [2, 16], "datatype": "INT32", "data": b.ravel().tolist()},
        ],
    }
    result = _json_infer(http, "add_sub_int32", body)
    assert result["id"] == "abc"
    assert result["model_name"] == "add_sub_int32"
    assert result["model_version"] == "1"
    outputs = _outputs_by_name(result)
    assert set(outputs) == {"OUTPUT0", "OUTPUT1"}
    for name, expected in (("OUTPUT0", a + b), ("OUTPUT1", a - b)):
        assert outputs[name]["datatype"] == "INT32"
        assert outputs[name]["shape"] == [2, 16]
        assert outputs[name]["data"] == expected.ravel().tolist()


def test_json_request_without_id_has_no_id_or_empty(http):
    a, b = _add_sub_data(np.int32, 1)
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": a.ravel().tolist()},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": b.ravel().tolist()},
        ]
    }
    result = _json_infer(http, "add_sub_int32", body)
    assert result.get("id", "") == ""


def test_nested_json_data(http):
    a, b = _add_sub_data(np.int32, 2)
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": a.tolist()},
            {"name": "INPUT1", "shape": [2, 16], "datatype": "INT32", "data": b.tolist()},
        ],
        "outputs": [{"name": "OUTPUT0"}],
    }
    result = _json_infer(http, "add_sub_int32", body)
    (output,) = result["outputs"]
    assert output["name"] == "OUTPUT0"
    assert output["shape"] == [2, 16]
    assert np.array(output["data"]).ravel().tolist() == (a + b).ravel().tolist()


def test_binary_data_output_request_parameter(http):
    a, b = _add_sub_data(np.int32, 2)
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": a.ravel().tolist()},
            {"name": "INPUT1", "shape": [2, 16], "datatype": "INT32", "data": b.ravel().tolist()},
        ],
        "parameters": {"binary_data_output": True},
    }
    response = http.post("/v2/models/add_sub_int32/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/octet-stream")
    header, blobs = parse_binary_response(response)
    outputs = _outputs_by_name(header)
    for name, expected in (("OUTPUT0", a + b), ("OUTPUT1", a - b)):
        assert "data" not in outputs[name]
        assert outputs[name]["parameters"]["binary_data_size"] == 2 * 16 * 4
        assert outputs[name]["shape"] == [2, 16]
        np.testing.assert_array_equal(np.frombuffer(blobs[name], np.int32).reshape(2, 16), expected)


def test_per_output_binary_flag_over_raw_http(http):
    a, b = _add_sub_data(np.float32, 1)
    header = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [1, 16],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 64},
            },
            {"name": "INPUT1", "shape": [1, 16], "datatype": "FP32", "data": b.ravel().tolist()},
        ],
        "outputs": [
            {"name": "OUTPUT0", "parameters": {"binary_data": True}},
            {"name": "OUTPUT1", "parameters": {"binary_data": False}},
        ],
    }
    content, headers = binary_body(header, [a.tobytes()])
    response = http.post("/v2/models/add_sub_fp32/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/octet-stream")
    result, blobs = parse_binary_response(response)
    outputs = _outputs_by_name(result)
    assert set(blobs) == {"OUTPUT0"}
    np.testing.assert_array_equal(np.frombuffer(blobs["OUTPUT0"], np.float32), (a + b).ravel())
    np.testing.assert_array_equal(np.array(outputs["OUTPUT1"]["data"], np.float32), (a - b).ravel())


# ----------------------------------------------------------------------------- datatypes


def _sample(datatype):
    """A [2, 3] sample covering the extremes of each datatype."""
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if datatype == "BYTES":
        return np.array([[b"hello", b"", "h\u00e9llo \u2603".encode()], [b"a", b"bc", b"def"]])
    if datatype in ("FP16", "FP32", "FP64"):
        dtype = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64}[datatype]
        info = np.finfo(dtype)
        return np.array([[1.5, -0.25, info.max], [info.min, info.tiny, 3.0e-3]], dtype=dtype)
    dtype = np.dtype(datatype.lower())
    info = np.iinfo(dtype)
    return np.array([[info.min, info.max, 0], [1, info.max - 1, 7]], dtype=dtype)


JSON_DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP32",
    "FP64",
    "BYTES",
]


def _as_object_bytes(array):
    return np.array([x if isinstance(x, bytes) else x.encode() for x in array.ravel()], object)


def _check_identity(result, expected):
    out = result.as_numpy("OUTPUT0")
    assert out.shape == expected.shape
    if expected.dtype == object:
        assert _as_object_bytes(out).tolist() == _as_object_bytes(expected).tolist()
    else:
        assert out.dtype == expected.dtype
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("datatype", JSON_DATATYPES)
def test_identity_json(triton, datatype):
    data = _sample(datatype)
    if datatype == "BYTES":
        data = data.astype(object)
    inp = triton_http.InferInput("INPUT0", [2, 3], datatype).set_data_from_numpy(data, False)
    result = triton.infer(
        identity_model_name(datatype), [inp], outputs=_outputs(["OUTPUT0"], False)
    )
    _check_identity(result, data)


@pytest.mark.parametrize("datatype", [*JSON_DATATYPES, "FP16"])
def test_identity_binary(triton, datatype):
    data = _sample(datatype)
    if datatype == "BYTES":
        # ONNX Runtime's Python API carries string tensors as text, so only valid UTF-8
        # (embedded NULs included) can round-trip through an ONNX string model.
        data = np.array(
            [[b"\x00\xc3\xa9\x01", b"", b"x" * 300], [b"a", b"\x00", "\u2603".encode()]],
            object,
        )
    inp = triton_http.InferInput("INPUT0", [2, 3], datatype).set_data_from_numpy(data, True)
    result = triton.infer(identity_model_name(datatype), [inp], outputs=_outputs(["OUTPUT0"], True))
    _check_identity(result, data)


def test_identity_bf16_binary_tritonclient(triton):
    data = np.array([[1.0, -2.5, 0.0078125], [3.0e10, -1.0e-3, 256.0]], dtype=ml_dtypes.bfloat16)
    inp = triton_http.InferInput("INPUT0", [2, 3], "BF16").set_data_from_numpy(data, True)
    result = triton.infer("identity_bf16", [inp], outputs=_outputs(["OUTPUT0"], True))
    out = result.as_numpy("OUTPUT0")
    assert out.shape == (2, 3)
    assert out.tobytes() == data.tobytes()


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_half_precision_binary_over_raw_http(http, datatype):
    raw = bytes(range(2, 26))  # 12 arbitrary finite 16-bit values
    header = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [3, 4],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }
    content, headers = binary_body(header, [raw])
    response = http.post(
        f"/v2/models/{identity_model_name(datatype)}/infer", content=content, headers=headers
    )
    assert response.status_code == 200, response.text
    result, blobs = parse_binary_response(response)
    assert result["outputs"][0]["datatype"] == datatype
    assert result["outputs"][0]["shape"] == [3, 4]
    assert blobs["OUTPUT0"] == raw


def test_bytes_binary_input_over_raw_http(http):
    items = [b"first", b"", b"\x00\x01\x02", "\u00fcber".encode()]
    blob = serialize_bytes(items)
    header = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [2, 2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(blob)},
            }
        ],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }
    content, headers = binary_body(header, [blob])
    response = http.post("/v2/models/identity_bytes/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    result, blobs = parse_binary_response(response)
    assert result["outputs"][0]["datatype"] == "BYTES"
    assert result["outputs"][0]["shape"] == [2, 2]
    assert deserialize_bytes(blobs["OUTPUT0"]) == items


def test_bytes_json_output(http):
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 3], "datatype": "BYTES", "data": ["x", "", "\u2603"]}
        ]
    }
    result = _json_infer(http, "identity_bytes", body)
    (output,) = result["outputs"]
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [1, 3]
    assert output["data"] == ["x", "", "\u2603"]


def test_bool_json_output_uses_json_booleans(http):
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 3], "datatype": "BOOL", "data": [True, False, True]}
        ]
    }
    (output,) = _json_infer(http, "identity_bool", body)["outputs"]
    assert output["data"] == [True, False, True]


def test_uint64_and_int64_extremes_in_json(http):
    big = [0, 2**64 - 1, 2**63]
    (out,) = _json_infer(
        http,
        "identity_uint64",
        {"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "UINT64", "data": big}]},
    )["outputs"]
    assert out["data"] == big
    small = [-(2**63), 2**63 - 1, -1]
    (out,) = _json_infer(
        http,
        "identity_int64",
        {"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "INT64", "data": small}]},
    )["outputs"]
    assert out["data"] == small


def test_fp64_json_round_trip_is_exact(http):
    values = [0.1, 1.0 / 3.0, -2.5e-300, 1.7976931348623157e308]
    (out,) = _json_infer(
        http,
        "identity_fp64",
        {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP64", "data": values}]},
    )["outputs"]
    assert out["data"] == values


def test_variable_length_dims(triton):
    data = RNG.standard_normal((1, 1000)).astype(np.float32)
    inp = triton_http.InferInput("INPUT0", [1, 1000], "FP32").set_data_from_numpy(data)
    result = triton.infer("identity_fp32", [inp])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_large_binary_tensor(triton):
    data = RNG.standard_normal((1, 1_000_000)).astype(np.float32)
    inp = triton_http.InferInput("INPUT0", [1, 1_000_000], "FP32").set_data_from_numpy(data)
    result = triton.infer("identity_fp32", [inp])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_binary_header_without_binary_inputs(http):
    a, b = _add_sub_data(np.int32, 1)
    header = {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": a.ravel().tolist()},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": b.ravel().tolist()},
        ]
    }
    content, headers = binary_body(header)
    response = http.post("/v2/models/add_sub_int32/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text
    assert _outputs_by_name(response.json())["OUTPUT0"]["data"] == (a + b).ravel().tolist()


def test_chunked_request_body(http):
    a, b = _add_sub_data(np.int32, 1)
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": [1, 16],
                    "datatype": "INT32",
                    "data": a.ravel().tolist(),
                },
                {
                    "name": "INPUT1",
                    "shape": [1, 16],
                    "datatype": "INT32",
                    "data": b.ravel().tolist(),
                },
            ]
        }
    ).encode()

    def chunks():
        for start in range(0, len(body), 37):
            yield body[start : start + 37]

    response = http.post("/v2/models/add_sub_int32/infer", content=chunks())
    assert response.status_code == 200, response.text
    assert _outputs_by_name(response.json())["OUTPUT1"]["data"] == (a - b).ravel().tolist()


@pytest.mark.parametrize(("model", "factor"), [("dyn_batch", 0.5), ("autocomplete_batch", 3.0)])
def test_concurrent_requests_get_their_own_results(http, model, factor):
    """Many concurrent requests of mixed batch sizes: the dynamic batcher must not mix them up."""

    def one(i):
        batch = 1 + i % 3
        data = (np.arange(4 * batch, dtype=np.float32).reshape(batch, 4) + 1000 * i) / 8
        body = {
            "id": f"r{i}",
            "inputs": [
                {
                    "name": "X",
                    "shape": [batch, 4],
                    "datatype": "FP32",
                    "data": data.ravel().tolist(),
                }
            ],
        }
        response = http.post(f"/v2/models/{model}/infer", json=body)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["id"] == f"r{i}"
        (output,) = result["outputs"]
        assert output["shape"] == [batch, 4]
        assert output["data"] == (data * np.float32(factor)).ravel().tolist()

    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(one, range(96)))


# ----------------------------------------------------------------------------- other models


def test_non_batching_model(triton):
    data = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 6.25]], dtype=np.float32)
    inp = triton_http.InferInput("INPUT0", [2, 3], "FP32").set_data_from_numpy(data)
    result = triton.infer("nobatch", [inp])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data * 2)


def test_autocomplete_fixed_model_infer(triton):
    data = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 6.25]], dtype=np.float32)
    inp = triton_http.InferInput("X", [2, 3], "FP32").set_data_from_numpy(data, False)
    result = triton.infer("autocomplete_fixed", [inp], outputs=_outputs(["Y"], False))
    np.testing.assert_array_equal(result.as_numpy("Y"), -data)


def test_reshape_model_succeeds_for_valid_shape(triton):
    data = np.arange(6, dtype=np.float32)
    shape = np.array([3, 2], dtype=np.int64)
    inputs = [
        triton_http.InferInput("DATA", [6], "FP32").set_data_from_numpy(data),
        triton_http.InferInput("SHAPE", [2], "INT64").set_data_from_numpy(shape, False),
    ]
    result = triton.infer("reshape_fail", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT"), data.reshape(3, 2))


# ----------------------------------------------------------------------------- classification

SCORES = np.array(
    [
        [0.125, 0.5, 0.875, -1.0, 0.25, 0.0625, 2.5, -0.5, 0.75, 0.375],
        [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 10.0],
    ],
    dtype=np.float32,
)


def _expected_classes(scores, k, labels=None):
    rows = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:k]
        entries = []
        for index in order:
            text = f"{float(row[index]):f}:{index}"
            if labels is not None:
                text += f":{labels[index]}"
            entries.append(text.encode())
        rows.append(entries)
    return rows


@pytest.mark.parametrize("binary_out", [True, False])
def test_classification_with_labels(triton, binary_out):
    inp = triton_http.InferInput("LOGITS", [2, 10], "FP32").set_data_from_numpy(SCORES)
    output = triton_http.InferRequestedOutput("PROBS", binary_data=binary_out, class_count=3)
    result = triton.infer("classifier", [inp], outputs=[output])
    response_output = result.get_output("PROBS")
    assert response_output["datatype"] == "BYTES"
    assert response_output["shape"] == [2, 3]
    got = result.as_numpy("PROBS")
    assert got.shape == (2, 3)
    assert _as_object_bytes(got).reshape(2, 3).tolist() == _expected_classes(
        SCORES, 3, CLASSIFIER_LABELS
    )
    assert got[0][0] in (b"2.500000:6:deer", "2.500000:6:deer")


def test_classification_without_labels(triton):
    a = np.concatenate([SCORES, SCORES[:, :6] - 10], axis=1)  # 16 distinct scores per row
    b = np.zeros((2, 16), dtype=np.float32)
    inputs = _inputs([a, b], "FP32", True)
    output = triton_http.InferRequestedOutput("OUTPUT0", class_count=2)
    result = triton.infer("add_sub_fp32", inputs, outputs=[output])
    got = _as_object_bytes(result.as_numpy("OUTPUT0")).reshape(2, 2).tolist()
    assert got == _expected_classes(a, 2)
    assert got[0] == [b"2.500000:6", b"0.875000:2"]


def test_classification_over_raw_json(http):
    body = {
        "inputs": [
            {"name": "LOGITS", "shape": [1, 10], "datatype": "FP32", "data": SCORES[0].tolist()}
        ],
        "outputs": [{"name": "PROBS", "parameters": {"classification": 1}}],
    }
    (output,) = _json_infer(http, "classifier", body)["outputs"]
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [1, 1]
    assert output["data"] == ["2.500000:6:deer"]


def test_classification_non_batching_model(http):
    body = {
        "inputs": [
            {"name": "INPUT0", "shape": [2, 3], "datatype": "FP32", "data": [1, 6, 3, 4, 5, 2]}
        ],
        "outputs": [{"name": "OUTPUT0", "parameters": {"classification": 2}}],
    }
    (output,) = _json_infer(http, "nobatch", body)["outputs"]
    assert output["datatype"] == "BYTES"
    assert output["shape"] == [2]
    assert output["data"] == ["12.000000:1", "10.000000:4"]


def test_classification_binary_with_gzip(triton):
    inp = triton_http.InferInput("LOGITS", [2, 10], "FP32").set_data_from_numpy(SCORES)
    output = triton_http.InferRequestedOutput("PROBS", binary_data=True, class_count=2)
    result = triton.infer(
        "classifier",
        [inp],
        outputs=[output],
        request_compression_algorithm="gzip",
        response_compression_algorithm="gzip",
    )
    got = _as_object_bytes(result.as_numpy("PROBS")).reshape(2, 2).tolist()
    assert got == _expected_classes(SCORES, 2, CLASSIFIER_LABELS)


# ----------------------------------------------------------------------------- compression


@pytest.mark.parametrize("request_algorithm", ["gzip", "deflate", None])
@pytest.mark.parametrize("response_algorithm", ["gzip", None])
@pytest.mark.parametrize("binary", [True, False])
def test_compression_tritonclient(triton, request_algorithm, response_algorithm, binary):
    a, b = _add_sub_data(np.int32, 8)
    result = triton.infer(
        "add_sub_int32",
        _inputs([a, b], "INT32", binary),
        outputs=_outputs(["OUTPUT0", "OUTPUT1"], binary),
        request_compression_algorithm=request_algorithm,
        response_compression_algorithm=response_algorithm,
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def _large_identity_body():
    data = RNG.integers(-(2**31), 2**31 - 1, size=(1, 2000), dtype=np.int64).astype(np.int32)
    body = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [1, 2000],
                "datatype": "INT32",
                "data": data.ravel().tolist(),
            }
        ]
    }
    return data, body


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
def test_compressed_request_body(http, encoding, compress):
    data, body = _large_identity_body()
    response = http.post(
        "/v2/models/identity_int32/infer",
        content=compress(json.dumps(body).encode()),
        headers={
            "Content-Encoding": encoding,
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == data.ravel().tolist()


def test_gzip_response_json(http):
    data, body = _large_identity_body()
    response = http.post(
        "/v2/models/identity_int32/infer", json=body, headers={"Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert response.headers.get("content-encoding") == "gzip"
    assert response.json()["outputs"][0]["data"] == data.ravel().tolist()


def test_gzip_response_binary(http):
    data, body = _large_identity_body()
    body["outputs"] = [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]
    response = http.post(
        "/v2/models/identity_int32/infer", json=body, headers={"Accept-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    assert response.headers.get("content-encoding") == "gzip"
    _, blobs = parse_binary_response(response)  # header length counts uncompressed bytes
    np.testing.assert_array_equal(np.frombuffer(blobs["OUTPUT0"], np.int32), data.ravel())


def test_no_compression_without_accept_encoding(http):
    data, body = _large_identity_body()
    response = http.post(
        "/v2/models/identity_int32/infer", json=body, headers={"Accept-Encoding": "identity"}
    )
    assert response.status_code == 200
    assert response.headers.get("content-encoding") in (None, "identity")
    assert json.loads(response.content)["outputs"][0]["data"] == data.ravel().tolist()


# ----------------------------------------------------------------------------- raw binary form


def test_raw_binary_request_non_batching(http):
    data = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 6.25]], dtype=np.float32)
    response = http.post(
        "/v2/models/nobatch/infer",
        content=data.tobytes(),
        headers={
            "Inference-Header-Content-Length": "0",
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/octet-stream")
    header, blobs = parse_binary_response(response)
    (output,) = header["outputs"]
    assert output["name"] == "OUTPUT0"
    assert output["datatype"] == "FP32"
    assert output["shape"] == [2, 3]
    np.testing.assert_array_equal(np.frombuffer(blobs["OUTPUT0"], np.float32), (data * 2).ravel())


def test_raw_binary_request_batching_model_uses_batch_one(http):
    response = http.post(
        "/v2/models/classifier/infer",
        content=SCORES[0].tobytes(),
        headers={"Inference-Header-Content-Length": "0"},
    )
    assert response.status_code == 200, response.text
    header, blobs = parse_binary_response(response)
    (output,) = header["outputs"]
    assert output["shape"] == [1, 10]
    assert np.frombuffer(blobs["PROBS"], np.float32).tolist() == SCORES[0].tolist()


# ------------------------------------------------- JSON floats and integers as Triton reads them

SPECIAL = [float("nan"), float("inf"), float("-inf"), 1.0]


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_non_finite_json_outputs_are_written_as_triton_writes_them(http, triton, datatype):
    """Real Triton 2.51 writes ``"data":[NaN,Infinity,-Infinity,1.0]``; never ``null``."""
    model = identity_model_name(datatype)
    text = b'{"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "%s", "data": %s}]}'
    body = text % (datatype.encode(), b"[NaN, Infinity, -Infinity, 1.0]")
    response = http.post(f"/v2/models/{model}/infer", content=body)
    assert response.status_code == 200, response.text
    assert b'"data":[NaN,Infinity,-Infinity,1.0]' in response.content
    assert b"null" not in response.content
    # tritonclient reads the JSON answer back to the same floats (binary input, JSON output)
    dtype = np.float32 if datatype == "FP32" else np.float64
    values = np.array([SPECIAL, [2.5, float("nan"), -0.0, 3.0]], dtype)
    inp = triton_http.InferInput("INPUT0", list(values.shape), datatype)
    inp.set_data_from_numpy(values, binary_data=True)
    wanted = [triton_http.InferRequestedOutput("OUTPUT0", binary_data=False)]
    result = triton.infer(model, [inp], outputs=wanted)
    out = result.as_numpy("OUTPUT0")
    assert out.dtype == values.dtype
    np.testing.assert_array_equal(out, values)


def test_fp32_json_input_past_its_range_is_infinity_as_in_triton(http):
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "FP32"}]}
    body["inputs"][0]["data"] = [1e39, -1e39, 0.5]
    (out,) = _json_infer(http, "identity_fp32", body)["outputs"]
    assert out["data"] == [float("inf"), float("-inf"), 0.5]


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("INT8", [300, -129], [44, 127]),
        ("UINT8", [256, 257], [0, 1]),
        ("INT32", [2**40, 7], [0, 7]),
    ],
)
def test_json_integers_past_their_type_are_cast_as_in_triton(http, datatype, data, expected):
    """Triton 2.51 answers 200 with the value cast to the type's width (300 as INT8: 44)."""
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": datatype, "data": data}]}
    (out,) = _json_infer(http, identity_model_name(datatype), body)["outputs"]
    assert out["data"] == expected


# ------------------------------------------- auto-complete of a 1-D [-1] ONNX model (as Triton)


def test_one_dimensional_dynamic_onnx_model_is_completed_and_served(start_server, tmp_path):
    """Triton's ONNX Runtime backend batches a model whose tensors are all ``[-1]``:
    ``max_batch_size: 4``, ``dims: [1]`` and ``reshape: { shape: [] }``."""
    save_model(tmp_path / "vector" / "1" / "model.onnx", identity_onnx(TensorProto.FLOAT, ["n"]))
    server = start_server(tmp_path, flags=["--grpc-address", "127.0.0.1"])
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        response = client.get("/v2/models/vector/config")
        assert response.status_code == 200, response.text
        config = response.json()
        assert config["max_batch_size"] == 4
        for tensor in (*config["input"], *config["output"]):
            assert (tensor["dims"], tensor["reshape"]) == ([1], {"shape": []}), tensor
        metadata = client.get("/v2/models/vector").json()
        assert metadata["inputs"][0]["shape"] == [-1, 1]
    data = np.array([[1.5], [-2.0], [4.0]], np.float32)
    client = triton_http.InferenceServerClient(server.url)
    inp = triton_http.InferInput("INPUT0", [3, 1], "FP32").set_data_from_numpy(data)
    np.testing.assert_array_equal(client.infer("vector", [inp]).as_numpy("OUTPUT0"), data)
    client.close()
    grpc_client = triton_grpc.InferenceServerClient(server.grpc_url)
    inp = triton_grpc.InferInput("INPUT0", [3, 1], "FP32")
    inp.set_data_from_numpy(data)
    np.testing.assert_array_equal(grpc_client.infer("vector", [inp]).as_numpy("OUTPUT0"), data)
    grpc_client.close()
