"""Health, server/model metadata, readiness, model configuration and version policies."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from .conftest import error_message
from .models import CLASSIFIER_LABELS, DATATYPES, IDENTITY_DATATYPES, identity_model_name

# ----------------------------------------------------------------------------- health


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready"])
def test_health_endpoints_are_200_with_empty_body(http, path):
    response = http.get(path)
    assert response.status_code == 200
    assert response.content == b""


def test_health_via_tritonclient(triton):
    assert triton.is_server_live()
    assert triton.is_server_ready()


# ----------------------------------------------------------------------------- server metadata


def test_server_metadata(http):
    response = http.get("/v2")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["name"] == "tidal"
    assert isinstance(body["version"], str) and body["version"]
    assert isinstance(body["extensions"], list)
    assert all(isinstance(ext, str) for ext in body["extensions"])
    for extension in ("binary_tensor_data", "classification"):
        assert extension in body["extensions"]


def test_server_metadata_via_tritonclient(triton):
    metadata = triton.get_server_metadata()
    assert metadata["name"] == "tidal"
    assert metadata["version"]


# ----------------------------------------------------------------------------- model metadata


def _by_name(tensors):
    return {tensor["name"]: tensor for tensor in tensors}


@pytest.mark.parametrize(
    ("model", "datatype"), [("add_sub_int32", "INT32"), ("add_sub_fp32", "FP32")]
)
def test_add_sub_metadata(http, model, datatype):
    response = http.get(f"/v2/models/{model}")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == model
    assert body["versions"] == ["1"]
    assert body["platform"] == "onnxruntime_onnx"
    for key, prefix in (("inputs", "INPUT"), ("outputs", "OUTPUT")):
        assert _by_name(body[key]) == {
            f"{prefix}{i}": {"name": f"{prefix}{i}", "datatype": datatype, "shape": [-1, 16]}
            for i in range(2)
        }


def test_metadata_with_explicit_version(http):
    body = http.get("/v2/models/add_sub_int32/versions/1").json()
    assert body["name"] == "add_sub_int32"
    assert body["versions"] == ["1"]
    assert {t["name"] for t in body["inputs"]} == {"INPUT0", "INPUT1"}


def test_non_batching_metadata_shape_has_no_batch_dim(http):
    body = http.get("/v2/models/nobatch").json()
    assert body["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [2, 3]}]
    assert body["outputs"] == [{"name": "OUTPUT0", "datatype": "FP32", "shape": [2, 3]}]


def test_reshape_model_metadata(http):
    body = http.get("/v2/models/reshape_fail").json()
    assert _by_name(body["inputs"]) == {
        "DATA": {"name": "DATA", "datatype": "FP32", "shape": [-1]},
        "SHAPE": {"name": "SHAPE", "datatype": "INT64", "shape": [2]},
    }
    assert body["outputs"] == [{"name": "OUTPUT", "datatype": "FP32", "shape": [-1, -1]}]


@pytest.mark.parametrize("datatype", IDENTITY_DATATYPES)
def test_identity_metadata_datatypes(http, datatype):
    model = identity_model_name(datatype)
    body = http.get(f"/v2/models/{model}").json()
    assert body["inputs"] == [{"name": "INPUT0", "datatype": datatype, "shape": [-1, -1]}]
    assert body["outputs"] == [{"name": "OUTPUT0", "datatype": datatype, "shape": [-1, -1]}]


def test_model_metadata_via_tritonclient(triton):
    metadata = triton.get_model_metadata("classifier")
    assert metadata["name"] == "classifier"
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "LOGITS", "datatype": "FP32", "shape": [-1, 10]}]
    assert metadata["outputs"] == [{"name": "PROBS", "datatype": "FP32", "shape": [-1, 10]}]


def test_unknown_model_metadata_is_404_naming_the_model(http):
    message = error_message(http.get("/v2/models/no_such_model_xyz"), 404)
    assert "no_such_model_xyz" in message


def test_unknown_version_metadata_is_404(http):
    error_message(http.get("/v2/models/add_sub_int32/versions/7"), 404)


def test_unknown_model_metadata_via_tritonclient(triton):
    with pytest.raises(InferenceServerException) as info:
        triton.get_model_metadata("no_such_model_xyz")
    assert "no_such_model_xyz" in info.value.message()


# ----------------------------------------------------------------------------- readiness


@pytest.mark.parametrize(
    "model",
    [
        "add_sub_int32",
        "add_sub_fp32",
        "classifier",
        "reshape_fail",
        "nobatch",
        "autocomplete_batch",
        "autocomplete_fixed",
        "dyn_batch",
        "nested_file",
        "custom_filename",
        *[identity_model_name(dt) for dt in IDENTITY_DATATYPES],
    ],
)
def test_every_model_is_ready(http, model):
    assert http.get(f"/v2/models/{model}/ready").status_code == 200
    assert http.get(f"/v2/models/{model}/versions/1/ready").status_code == 200


def test_unknown_model_is_not_ready(http, triton):
    assert http.get("/v2/models/no_such_model_xyz/ready").status_code == 400
    assert not triton.is_model_ready("no_such_model_xyz")


def test_model_ready_via_tritonclient(triton):
    assert triton.is_model_ready("add_sub_int32")
    assert triton.is_model_ready("add_sub_int32", "1")
    assert not triton.is_model_ready("add_sub_int32", "2")


# ----------------------------------------------------------------------------- versions

# model -> (ready versions, versions on disk that must not be served)
VERSION_CASES = {
    "versioned": (["2"], ["1", "3", "4"]),
    "versioned_all": (["1", "2"], ["3", "100"]),
    "versioned_latest2": (["2", "3"], ["1"]),
    "versioned_specific": (["1", "3"], ["2"]),
}


@pytest.mark.parametrize("model", list(VERSION_CASES))
def test_version_policy_ready_versions(http, model):
    ready, not_ready = VERSION_CASES[model]
    body = http.get(f"/v2/models/{model}").json()
    assert sorted(body["versions"], key=int) == ready
    for version in ready:
        assert http.get(f"/v2/models/{model}/versions/{version}/ready").status_code == 200
        assert http.get(f"/v2/models/{model}/versions/{version}").status_code == 200
    for version in not_ready:
        assert http.get(f"/v2/models/{model}/versions/{version}/ready").status_code == 400
        error_message(http.get(f"/v2/models/{model}/versions/{version}"), 404)
    assert http.get(f"/v2/models/{model}/ready").status_code == 200


def _infer_versioned(triton, model, version=""):
    data = np.arange(8, dtype=np.int32).reshape(2, 4)
    inp = triton_http.InferInput("INPUT0", [2, 4], "INT32")
    inp.set_data_from_numpy(data, binary_data=False)
    result = triton.infer(model, [inp], model_version=version)
    return result.as_numpy("OUTPUT0") - data


@pytest.mark.parametrize("model", list(VERSION_CASES))
def test_version_policy_inference(triton, model):
    ready, _ = VERSION_CASES[model]
    # No version means the highest ready version; version n adds n.
    assert np.all(_infer_versioned(triton, model) == int(ready[-1]))
    for version in ready:
        assert np.all(_infer_versioned(triton, model, version) == int(version))


@pytest.mark.parametrize(("model", "version"), [("versioned", "1"), ("versioned_specific", "2")])
def test_infer_on_unloaded_version_is_404(http, model, version):
    body = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "INT32", "data": [1] * 4}]}
    error_message(http.post(f"/v2/models/{model}/versions/{version}/infer", json=body), 404)


@pytest.mark.parametrize(("model", "constant"), [("nested_file", 10), ("custom_filename", 20)])
def test_model_file_layouts(triton, model, constant):
    assert np.all(_infer_versioned(triton, model) == constant)


# ----------------------------------------------------------------------------- configuration


def test_config_of_configured_model(http):
    response = http.get("/v2/models/add_sub_int32/config")
    assert response.status_code == 200
    config = response.json()
    assert config["name"] == "add_sub_int32"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 8
    for key, prefix in (("input", "INPUT"), ("output", "OUTPUT")):
        tensors = _by_name(config[key])
        assert set(tensors) == {f"{prefix}0", f"{prefix}1"}
        for tensor in tensors.values():
            assert tensor["data_type"] == "TYPE_INT32"
            assert tensor["dims"] == [16]
            assert all(type(d) is int for d in tensor["dims"])


def test_config_with_explicit_version(http):
    config = http.get("/v2/models/versioned_all/versions/1/config").json()
    assert config["name"] == "versioned_all"
    assert config["max_batch_size"] == 8


@pytest.mark.parametrize("datatype", IDENTITY_DATATYPES)
def test_config_data_type_names(http, datatype):
    config = http.get(f"/v2/models/{identity_model_name(datatype)}/config").json()
    assert config["input"][0]["data_type"] == DATATYPES[datatype][1]
    assert config["output"][0]["data_type"] == DATATYPES[datatype][1]
    assert config["input"][0]["dims"] == [-1]


def test_config_keeps_label_filename(http):
    config = http.get("/v2/models/classifier/config").json()
    assert config["output"][0]["label_filename"] == "labels.txt"
    assert len(CLASSIFIER_LABELS) == 10


def test_autocomplete_batching_model_config(http):
    response = http.get("/v2/models/autocomplete_batch/config")
    assert response.status_code == 200
    config = response.json()
    assert config["name"] == "autocomplete_batch"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 4
    assert isinstance(config["dynamic_batching"], dict)
    (inp,) = config["input"]
    (out,) = config["output"]
    assert (inp["name"], inp["data_type"], inp["dims"]) == ("X", "TYPE_FP32", [4])
    assert (out["name"], out["data_type"], out["dims"]) == ("Y", "TYPE_FP32", [4])
    assert type(inp["dims"][0]) is int


def test_autocomplete_batching_model_metadata_and_infer(http, triton):
    body = http.get("/v2/models/autocomplete_batch").json()
    assert body["platform"] == "onnxruntime_onnx"
    assert body["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert body["outputs"] == [{"name": "Y", "datatype": "FP32", "shape": [-1, 4]}]
    data = np.array([[1.5, -2.0, 0.25, 8.0]] * 4, dtype=np.float32)
    inp = triton_http.InferInput("X", [4, 4], "FP32")
    inp.set_data_from_numpy(data)
    result = triton.infer("autocomplete_batch", [inp])
    np.testing.assert_array_equal(result.as_numpy("Y"), data * np.float32(3.0))


def test_config_of_dynamic_batching_model(http):
    config = http.get("/v2/models/dyn_batch/config").json()
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] in (2000, "2000")
    assert sum(int(group["count"]) for group in config["instance_group"]) == 2


def test_autocomplete_fixed_shape_model_is_not_batching(http):
    config = http.get("/v2/models/autocomplete_fixed/config").json()
    assert config.get("max_batch_size", 0) == 0
    assert config["input"][0]["dims"] == [2, 3]
    assert config["output"][0]["dims"] == [2, 3]
    body = http.get("/v2/models/autocomplete_fixed").json()
    assert body["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [2, 3]}]


def test_config_via_tritonclient(triton):
    config = triton.get_model_config("autocomplete_batch")
    assert config["max_batch_size"] == 4
    assert config["input"][0]["name"] == "X"


def test_unknown_model_config_is_error(http):
    response = http.get("/v2/models/no_such_model_xyz/config")
    assert response.status_code in (400, 404)
    assert "no_such_model_xyz" in error_message(response, response.status_code)
