"""Error handling over HTTP: status codes, ``{"error": ...}`` bodies, and that the server keeps
serving after every error."""

from __future__ import annotations

import gzip
import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from .conftest import binary_body, error_message, running_server, serialize_bytes
from .models import garbage_model, identity_model


@pytest.fixture(autouse=True)
def _server_still_ready_after_each_test(http):
    yield
    response = http.get("/v2/health/ready")
    assert response.status_code == 200, "server not ready after an error"
    assert http.get("/v2/models/add_sub_int32/ready").status_code == 200


def _tensor(name="INPUT0", shape=(1, 16), datatype="INT32", data=None):
    count = int(np.prod(shape))
    return {
        "name": name,
        "shape": list(shape),
        "datatype": datatype,
        "data": list(range(count)) if data is None else data,
    }


def _add_sub_body(**overrides):
    inputs = [_tensor("INPUT0"), _tensor("INPUT1")]
    body = {"inputs": inputs}
    body.update(overrides)
    return body


def _post(http, model, body, version=None):
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    return http.post(path, json=body)


# ----------------------------------------------------------------------------- sanity


def test_valid_request_succeeds(http):
    response = _post(http, "add_sub_int32", _add_sub_body())
    assert response.status_code == 200, response.text


# ----------------------------------------------------------------------------- 400: malformed


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[]", b'"inputs"', b'{"inputs": 5}', b'{"inputs": [5]}', b"\xff\xfe"],
    ids=["truncated", "empty", "array", "string", "inputs-not-list", "input-not-object", "binary"],
)
def test_malformed_json_is_400(http, content):
    response = http.post(
        "/v2/models/add_sub_int32/infer",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    error_message(response, 400)


def test_missing_inputs_key_is_400(http):
    error_message(_post(http, "add_sub_int32", {"id": "x"}), 400)


def test_input_without_data_is_400(http):
    body = _add_sub_body()
    del body["inputs"][0]["data"]
    error_message(_post(http, "add_sub_int32", body), 400)


# ----------------------------------------------------------------------------- 400: tensors


@pytest.mark.parametrize(
    "shape",
    [(1, 15), (16,), (1, 1, 16), (2, 8)],
    ids=["wrong-dim", "missing-batch-dim", "extra-dim", "wrong-split"],
)
def test_wrong_shape_is_400_naming_the_input(http, shape):
    body = _add_sub_body()
    body["inputs"][1] = _tensor("INPUT1", shape)
    message = error_message(_post(http, "add_sub_int32", body), 400)
    assert "INPUT1" in message


def test_wrong_shape_non_batching_is_400_naming_the_input(http):
    body = {"inputs": [_tensor("INPUT0", (1, 2, 3), "FP32")]}
    message = error_message(_post(http, "nobatch", body), 400)
    assert "INPUT0" in message


@pytest.mark.parametrize("datatype", ["FP32", "INT64", "BYTES", "NOT_A_TYPE"])
def test_wrong_datatype_is_400_naming_the_input(http, datatype):
    body = _add_sub_body()
    data = [str(i) for i in range(16)] if datatype == "BYTES" else None
    body["inputs"][0] = _tensor("INPUT0", datatype=datatype, data=data)
    message = error_message(_post(http, "add_sub_int32", body), 400)
    assert "INPUT0" in message


@pytest.mark.parametrize("count", [15, 17, 0])
def test_element_count_mismatch_is_400(http, count):
    body = _add_sub_body()
    body["inputs"][0]["data"] = list(range(count))
    error_message(_post(http, "add_sub_int32", body), 400)


def test_json_values_of_wrong_type_are_500_as_in_triton(http):
    body = _add_sub_body()
    body["inputs"][0]["data"] = ["a"] * 16
    error_message(_post(http, "add_sub_int32", body), 500)


@pytest.mark.parametrize(
    ("model", "datatype", "data", "status"),
    [
        ("identity_int8", "INT8", [1.5, 1], 500),
        ("identity_int32", "INT32", [True, 1], 500),
        ("identity_uint8", "UINT8", [-1, 1], 500),
        ("identity_bool", "BOOL", [1, 0], 500),
        ("identity_bytes", "BYTES", [1, "a"], 400),
        ("identity_fp32", "FP32", ["1.0", 2.0], 500),
        ("identity_fp32", "FP32", [None, 2.0], 500),
    ],
    ids=[
        "float-for-int",
        "bool-for-int",
        "negative-for-uint",
        "int-for-bool",
        "number-for-bytes",
        "string-for-float",
        "null-for-float",
    ],
)
def test_json_elements_not_matching_datatype_are_refused(http, model, datatype, data, status):
    """Numbers of the wrong kind: Triton 2.51's 500 "Unable to parse 'data'" (checked)."""
    body = {"inputs": [_tensor("INPUT0", (1, 2), datatype, data)]}
    error_message(_post(http, model, body), status)


def test_unknown_input_is_400(http):
    body = _add_sub_body()
    body["inputs"].append(_tensor("INPUT9"))
    error_message(_post(http, "add_sub_int32", body), 400)


def test_missing_input_is_400(http):
    body = _add_sub_body()
    del body["inputs"][1]
    error_message(_post(http, "add_sub_int32", body), 400)


def test_duplicate_input_is_400(http):
    body = _add_sub_body()
    body["inputs"][1] = _tensor("INPUT0")
    error_message(_post(http, "add_sub_int32", body), 400)


def test_unknown_requested_output_is_400(http):
    error_message(_post(http, "add_sub_int32", _add_sub_body(outputs=[{"name": "NOPE"}])), 400)


def test_batch_over_max_batch_size_is_400(http):
    body = {"inputs": [_tensor("INPUT0", (9, 16)), _tensor("INPUT1", (9, 16))]}
    error_message(_post(http, "add_sub_int32", body), 400)


def test_mismatched_batch_sizes_between_inputs_is_400(http):
    body = {"inputs": [_tensor("INPUT0", (2, 16)), _tensor("INPUT1", (3, 16))]}
    error_message(_post(http, "add_sub_int32", body), 400)


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_half_precision_in_json_is_400(http, datatype):
    model = f"identity_{datatype.lower()}"
    body = {"inputs": [_tensor("INPUT0", (1, 3), datatype, [1.0, 2.0, 3.0])]}
    error_message(_post(http, model, body), 400)


# ----------------------------------------------------------------------------- 400: binary data


def _binary_add_sub(size0=64, blob0=None, size1=64, blob1=None, datatype="INT32"):
    header = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [1, 16],
                "datatype": datatype,
                "parameters": {"binary_data_size": size0},
            },
            {
                "name": "INPUT1",
                "shape": [1, 16],
                "datatype": datatype,
                "parameters": {"binary_data_size": size1},
            },
        ]
    }
    blob0 = bytes(64) if blob0 is None else blob0
    blob1 = bytes(64) if blob1 is None else blob1
    return binary_body(header, [blob0, blob1])


def test_binary_request_valid(http):
    content, headers = _binary_add_sub()
    response = http.post("/v2/models/add_sub_int32/infer", content=content, headers=headers)
    assert response.status_code == 200, response.text


def test_header_length_larger_than_body_is_400(http):
    content, headers = _binary_add_sub()
    headers["Inference-Header-Content-Length"] = str(len(content) + 100)
    response = http.post("/v2/models/add_sub_int32/infer", content=content, headers=headers)
    error_message(response, 400)


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_invalid_header_length_is_400(http, value):
    content, headers = _binary_add_sub()
    headers["Inference-Header-Content-Length"] = value
    response = http.post("/v2/models/add_sub_int32/infer", content=content, headers=headers)
    error_message(response, 400)


def test_header_length_cutting_json_is_400(http):
    content, headers = _binary_add_sub()
    headers["Inference-Header-Content-Length"] = "10"
    response = http.post("/v2/models/add_sub_int32/infer", content=content, headers=headers)
    error_message(response, 400)


@pytest.mark.parametrize(
    ("size1", "blob1"),
    [(64, bytes(60)), (80, bytes(64)), (60, bytes(60))],
    ids=["body-short", "declared-too-big", "size-not-matching-shape"],
)
def test_binary_data_size_mismatch_is_400(http, size1, blob1):
    content, headers = _binary_add_sub(size1=size1, blob1=blob1)
    response = http.post("/v2/models/add_sub_int32/infer", content=content, headers=headers)
    error_message(response, 400)


def test_input_with_both_data_and_binary_data_size_is_400(http):
    header = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [1, 2],
                "datatype": "FP32",
                "data": [1.0, 2.0],
                "parameters": {"binary_data_size": 8},
            }
        ]
    }
    content, headers = binary_body(header, [np.array([3.0, 4.0], np.float32).tobytes()])
    response = http.post("/v2/models/identity_fp32/infer", content=content, headers=headers)
    error_message(response, 400)


def test_malformed_binary_bytes_tensor_is_400(http):
    blob = serialize_bytes([b"ok"]) + (100).to_bytes(4, "little") + b"short"
    header = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [1, 2],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(blob)},
            }
        ]
    }
    content, headers = binary_body(header, [blob])
    response = http.post("/v2/models/identity_bytes/infer", content=content, headers=headers)
    error_message(response, 400)


def test_raw_binary_wrong_size_is_400(http):
    response = http.post(
        "/v2/models/nobatch/infer",
        content=bytes(20),
        headers={"Inference-Header-Content-Length": "0"},
    )
    error_message(response, 400)


def test_raw_binary_for_model_with_two_inputs_is_400(http):
    response = http.post(
        "/v2/models/add_sub_int32/infer",
        content=bytes(64),
        headers={"Inference-Header-Content-Length": "0"},
    )
    error_message(response, 400)


def test_bad_gzip_body_is_400(http):
    response = http.post(
        "/v2/models/add_sub_int32/infer",
        content=b"definitely not gzip",
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    error_message(response, 400)


def test_gzip_body_with_bad_json_is_400(http):
    response = http.post(
        "/v2/models/add_sub_int32/infer",
        content=gzip.compress(b"{oops"),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    error_message(response, 400)


# ----------------------------------------------------------------------------- 400: versions


def test_non_numeric_version_on_infer_is_400(http):
    error_message(_post(http, "add_sub_int32", _add_sub_body(), version="abc"), 400)


def test_non_numeric_version_on_metadata_is_400(http):
    error_message(http.get("/v2/models/add_sub_int32/versions/abc"), 400)


# ----------------------------------------------------------------------------- 404


def test_unknown_model_infer_is_404_naming_the_model(http):
    message = error_message(_post(http, "no_such_model_xyz", _add_sub_body()), 404)
    assert "no_such_model_xyz" in message


def test_unknown_version_infer_is_404(http):
    error_message(_post(http, "add_sub_int32", _add_sub_body(), version="5"), 404)


def test_unknown_model_via_tritonclient(triton):
    inp = triton_http.InferInput("INPUT0", [1, 16], "INT32")
    inp.set_data_from_numpy(np.zeros((1, 16), np.int32))
    with pytest.raises(InferenceServerException) as info:
        triton.infer("no_such_model_xyz", [inp])
    assert info.value.status() == "404"
    assert "no_such_model_xyz" in info.value.message()


def test_bad_shape_via_tritonclient(triton):
    inp = triton_http.InferInput("INPUT0", [1, 15], "INT32")
    inp.set_data_from_numpy(np.zeros((1, 15), np.int32))
    other = triton_http.InferInput("INPUT1", [1, 16], "INT32")
    other.set_data_from_numpy(np.zeros((1, 16), np.int32))
    with pytest.raises(InferenceServerException) as info:
        triton.infer("add_sub_int32", [inp, other])
    assert info.value.status() == "400"
    assert "INPUT0" in info.value.message()


# ----------------------------------------------------------------------------- 405


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/add_sub_int32/infer"),
        ("PUT", "/v2/models/add_sub_int32/infer"),
        ("POST", "/v2/health/live"),
        ("POST", "/v2/health/ready"),
        ("POST", "/v2/models/add_sub_int32"),
        ("POST", "/v2/models/add_sub_int32/ready"),
        ("DELETE", "/v2"),
    ],
)
def test_wrong_method_is_405(http, method, path):
    error_message(http.request(method, path), 405)


# ----------------------------------------------------------------------------- 500


def _reshape_body(shape):
    return {
        "inputs": [
            {"name": "DATA", "shape": [4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]},
            {"name": "SHAPE", "shape": [2], "datatype": "INT64", "data": shape},
        ]
    }


def test_model_execution_failure_is_500(http):
    error_message(_post(http, "reshape_fail", _reshape_body([3, 3])), 500)
    # The model still works for inputs it can handle.
    response = _post(http, "reshape_fail", _reshape_body([2, 2]))
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert output["shape"] == [2, 2]
    assert output["data"] == [1.0, 2.0, 3.0, 4.0]


def test_repeated_execution_failures(http):
    for _ in range(5):
        error_message(_post(http, "reshape_fail", _reshape_body([5, 1])), 500)


def test_execution_failure_via_tritonclient(triton):
    inputs = [
        triton_http.InferInput("DATA", [4], "FP32").set_data_from_numpy(np.ones(4, np.float32)),
        triton_http.InferInput("SHAPE", [2], "INT64").set_data_from_numpy(
            np.array([3, 7], np.int64)
        ),
    ]
    with pytest.raises(InferenceServerException) as info:
        triton.infer("reshape_fail", inputs)
    assert info.value.status() == "500"
    assert info.value.message()


def test_error_body_is_json_object(http):
    response = http.post("/v2/models/add_sub_int32/infer", content=b"{")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert set(json.loads(response.content)) == {"error"}


# What real Triton 2.51 answered (HTTP JSON to a Python-backend model echoing its input):
# a JSON value of the wrong kind for the datatype is 500, "Unable to parse 'data': ...".
@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("INT32", 1.5),
        ("INT32", 2.0),
        ("INT32", True),
        ("INT32", "3"),
        ("UINT8", -1),
        ("INT64", 2**63),
        ("UINT64", 2**64),
        ("FP32", None),
        ("FP32", True),
        ("BOOL", 1),
    ],
)
def test_json_data_of_the_wrong_kind_is_unparsable_as_in_triton(http, datatype, value):
    model = f"identity_{datatype.lower()}"
    body = {"inputs": [_tensor(shape=(1, 1), datatype=datatype, data=[value])]}
    response = http.post(f"/v2/models/{model}/infer", content=json.dumps(body))
    message = error_message(response, 500)
    assert message.startswith(f"Unable to parse 'data': input 'INPUT0' is {datatype}, ")


# ----------------------------------------------------- models without a ready version (Triton)
# Real Triton 2.51 (explicit mode, checked): after an unload, and for a model that failed to
# load, metadata, config and infer answer 404 / NOT_FOUND "Request for unknown model: 'm' has
# no available versions"; ready is 400 (false); stats is 400 / INVALID_ARGUMENT "requested
# model 'm' is not available"; a named version that is not ready is 503 / UNAVAILABLE.


@pytest.fixture(scope="module")
def unloaded_server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("unload_repo")
    identity_model(repo, "FP32")
    identity_model(repo, "INT32")
    garbage_model(repo, "broken")
    flags = [
        "--model-control-mode",
        "explicit",
        "--load-model",
        "*",
        "--exit-on-error=false",
        "--strict-readiness=false",
        "--grpc-address",
        "127.0.0.1",
    ]
    with running_server(repo, flags=flags) as proc:
        with httpx.Client(base_url=proc.base_url, timeout=30) as client:
            response = client.post("/v2/repository/models/identity_int32/unload")
            assert response.status_code == 200, response.text
        yield proc


GONE = ["identity_int32", "broken"]


def _no_versions(name: str) -> str:
    return f"Request for unknown model: '{name}' has no available versions"


@pytest.mark.parametrize("name", GONE)
def test_http_model_without_ready_versions_is_404_as_in_triton(unloaded_server, name):
    with httpx.Client(base_url=unloaded_server.base_url, timeout=30) as client:
        body = {"inputs": [_tensor(shape=(1, 2), datatype="INT32", data=[1, 2])]}
        for response in (
            client.get(f"/v2/models/{name}"),
            client.get(f"/v2/models/{name}/config"),
            client.post(f"/v2/models/{name}/infer", json=body),
        ):
            assert error_message(response, 404).startswith(_no_versions(name))
        assert client.get(f"/v2/models/{name}/ready").status_code == 400
        message = error_message(client.get(f"/v2/models/{name}/stats"), 400)
        assert message == f"requested model '{name}' is not available"
        if name == "identity_int32":  # its message is exactly Triton's; version 1 is known
            assert error_message(client.get(f"/v2/models/{name}"), 404) == _no_versions(name)
            response = client.get(f"/v2/models/{name}/versions/1")
            assert error_message(response, 503).startswith(
                f"Request for unknown model: '{name}' version 1 is not at ready state"
            )
        assert client.get("/v2/models/identity_fp32/ready").status_code == 200


@pytest.mark.parametrize("name", GONE)
def test_grpc_model_without_ready_versions_is_not_found_as_in_triton(unloaded_server, name):
    client = triton_grpc.InferenceServerClient(unloaded_server.grpc_url)
    data = triton_grpc.InferInput("INPUT0", [1, 2], "INT32")
    data.set_data_from_numpy(np.array([[1, 2]], np.int32))
    calls = {
        "metadata": lambda: client.get_model_metadata(name),
        "config": lambda: client.get_model_config(name),
        "infer": lambda: client.infer(name, [data]),
        "stats": lambda: client.get_inference_statistics(name),
    }
    for what, call in calls.items():
        with pytest.raises(InferenceServerException) as info:
            call()
        if what == "stats":
            assert info.value.status() == "StatusCode.INVALID_ARGUMENT", what
            assert info.value.message() == f"requested model '{name}' is not available"
        else:
            assert info.value.status() == "StatusCode.NOT_FOUND", what
            assert info.value.message().startswith(_no_versions(name)), what
    assert client.is_model_ready(name) is False
    client.close()
