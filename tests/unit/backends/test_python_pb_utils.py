"""``triton_python_backend_utils`` as model code uses it (imported here from tidal's package)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tidal.backends.python.worker import pb_utils


def _request(*tensors: pb_utils.Tensor, **kwargs) -> pb_utils.InferenceRequest:
    return pb_utils.InferenceRequest(
        model_name="m", requested_output_names=["OUT"], inputs=list(tensors), **kwargs
    )


def test_tensor_basics():
    tensor = pb_utils.Tensor("X", np.array([[1, 2]], dtype=np.int32))
    assert tensor.name() == "X"
    assert tensor.as_numpy().tolist() == [[1, 2]]
    assert tensor.shape() == [1, 2]
    assert tensor.triton_dtype() == 8  # TYPE_INT32
    assert tensor.is_cpu()


def test_tensor_of_strings_holds_bytes_objects():
    tensor = pb_utils.Tensor("S", np.array(["ab", "é"]))
    data = tensor.as_numpy()
    assert data.dtype == np.object_
    assert data.tolist() == [b"ab", "é".encode()]
    assert tensor.triton_dtype() == 13


def test_tensor_rejects_what_is_not_an_array():
    with pytest.raises(pb_utils.TritonModelException, match="numpy array"):
        pb_utils.Tensor("X", [1, 2, 3])  # type: ignore[arg-type]


def test_tensor_dlpack_round_trip():
    tensor = pb_utils.Tensor("X", np.arange(4, dtype=np.float32))
    again = pb_utils.Tensor.from_dlpack("Y", tensor.to_dlpack())
    assert again.as_numpy().tolist() == [0, 1, 2, 3]


def test_get_input_tensor_by_name_gives_none_for_a_missing_input():
    x = pb_utils.Tensor("X", np.zeros(2, dtype=np.float32))
    request = _request(x)
    assert pb_utils.get_input_tensor_by_name(request, "X") is x
    assert pb_utils.get_input_tensor_by_name(request, "OPTIONAL") is None


def test_request_accessors():
    request = _request(request_id="r1", parameters={"a": 1, "b": True, "c": "x"})
    assert request.request_id() == "r1"
    assert json.loads(request.parameters()) == {"a": 1, "b": True, "c": "x"}
    assert request.requested_output_names() == {"OUT"}
    assert request.flags() == 0
    assert not request.is_cancelled()


def test_request_parameters_must_be_bool_int_or_str():
    with pytest.raises(pb_utils.TritonModelException, match="bool, int or str"):
        _request(parameters={"a": 1.5})


def test_bls_outside_a_worker_is_refused():
    with pytest.raises(pb_utils.TritonModelException, match="not available"):
        _request().exec()
    with pytest.raises(pb_utils.TritonModelException, match="decoupled"):
        _request().exec(decoupled=True)


def test_response_and_errors():
    out = pb_utils.Tensor("OUT", np.ones(1, dtype=np.float32))
    response = pb_utils.InferenceResponse(output_tensors=[out])
    assert not response.has_error()
    assert pb_utils.get_output_tensor_by_name(response, "OUT") is out
    assert pb_utils.get_output_tensor_by_name(response, "NOPE") is None
    failed = pb_utils.InferenceResponse(error=pb_utils.TritonError("bad", 3))
    assert failed.has_error()
    assert failed.error().message() == "bad"
    assert failed.error().code() == pb_utils.TritonError.INVALID_ARG
    assert pb_utils.TritonError("x").code() == pb_utils.TritonError.INTERNAL


def test_config_helpers():
    config = {
        "input": [{"name": "IN", "data_type": "TYPE_FP32"}],
        "output": [{"name": "OUT", "data_type": "TYPE_STRING"}],
    }
    out = pb_utils.get_output_config_by_name(config, "OUT")
    assert out is not None
    assert pb_utils.triton_string_to_numpy(out["data_type"]) is np.object_
    assert pb_utils.get_input_config_by_name(config, "IN")["data_type"] == "TYPE_FP32"
    assert pb_utils.get_input_config_by_name(config, "NOPE") is None
    assert pb_utils.triton_string_to_numpy("TYPE_FP16") is np.float16
    assert pb_utils.triton_to_numpy_type(8) is np.int32
    assert pb_utils.numpy_to_triton_type(np.float64) == 12
    assert pb_utils.numpy_to_triton_type(np.bytes_) == 13


def test_byte_tensor_serialization():
    encoded = pb_utils.serialize_byte_tensor(np.array([b"ab", b"c"], dtype=object))
    assert encoded.item() == b"\x02\x00\x00\x00ab\x01\x00\x00\x00c"
    assert pb_utils.deserialize_bytes_tensor(encoded.item()).tolist() == [b"ab", b"c"]


def _auto(config: dict) -> pb_utils.ModelConfig:
    return pb_utils.ModelConfig(config)


def test_auto_complete_adds_inputs_outputs_and_batching():
    config = _auto({"name": "m", "max_batch_size": 0})
    config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [4], "optional": True})
    config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [4]})
    config.set_max_batch_size(8)
    config.set_dynamic_batching()
    result = config.as_dict()
    assert result["input"] == [
        {"name": "IN", "data_type": "TYPE_FP32", "dims": [4], "optional": True}
    ]
    assert result["output"][0]["name"] == "OUT"
    assert result["max_batch_size"] == 8
    assert result["dynamic_batching"] == {}
    result["input"].clear()  # as_dict is a copy
    assert config.as_dict()["input"]


def test_auto_complete_fills_and_checks_what_the_config_has():
    config = _auto({"input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": []}]})
    config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [3]})
    assert config.as_dict()["input"] == [{"name": "IN", "data_type": "TYPE_FP32", "dims": [3]}]
    with pytest.raises(ValueError, match="data_type TYPE_FP32 in the configuration"):
        config.add_input({"name": "IN", "data_type": "TYPE_INT32", "dims": [3]})
    with pytest.raises(ValueError, match="has no 'dims'"):
        config.add_output({"name": "OUT", "data_type": "TYPE_FP32"})


def test_auto_complete_keeps_a_smaller_configured_max_batch_size():
    config = _auto({"max_batch_size": 2})
    config.set_max_batch_size(8)
    assert config.as_dict()["max_batch_size"] == 2
    with pytest.raises(ValueError, match="max_batch_size 2"):
        config.set_max_batch_size(1)
