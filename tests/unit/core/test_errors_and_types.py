import dataclasses

import numpy as np
import pytest

from tidal.core import (
    DataType,
    ErrorCode,
    InferenceError,
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    ModelState,
    RequestedOutput,
)


@pytest.mark.parametrize(
    ("factory", "code"),
    [
        (InferenceError.invalid, ErrorCode.INVALID_ARG),
        (InferenceError.not_found, ErrorCode.NOT_FOUND),
        (InferenceError.unavailable, ErrorCode.UNAVAILABLE),
        (InferenceError.internal, ErrorCode.INTERNAL),
        (InferenceError.unsupported, ErrorCode.UNSUPPORTED),
    ],
)
def test_factories_set_code_and_message(factory, code):
    error = factory("it broke")
    assert isinstance(error, InferenceError)
    assert error.code is code
    assert error.message == "it broke"
    assert str(error) == "it broke"


def test_error_repr_names_code_and_message():
    error = InferenceError(ErrorCode.CANCELLED, "gone")
    assert repr(error) == "InferenceError(CANCELLED, 'gone')"


def test_error_is_an_exception_and_raises():
    with pytest.raises(InferenceError) as info:
        raise InferenceError.invalid("bad")
    assert info.value.code is ErrorCode.INVALID_ARG
    assert isinstance(info.value, Exception)


def test_error_codes_are_tritons():
    assert [code.value for code in ErrorCode] == [
        "UNKNOWN",
        "INTERNAL",
        "NOT_FOUND",
        "INVALID_ARG",
        "UNAVAILABLE",
        "UNSUPPORTED",
        "ALREADY_EXISTS",
        "CANCELLED",
    ]


def test_model_states():
    assert [state.value for state in ModelState] == [
        "UNKNOWN",
        "LOADING",
        "READY",
        "UNLOADING",
        "UNAVAILABLE",
    ]


def test_request_defaults():
    data = np.zeros(2, np.float32)
    request = InferRequest("m", [InferInput("x", DataType.FP32, (2,), data)])
    assert request.model_version is None
    assert request.id is None
    assert request.outputs is None
    assert request.parameters == {}
    assert request.inputs[0].parameters == {}


def test_default_parameters_are_not_shared():
    first = InferRequest("m", [])
    second = InferRequest("m", [])
    first.parameters["k"] = 1
    assert second.parameters == {}
    assert RequestedOutput("y").parameters is not RequestedOutput("y").parameters


def test_requested_output_defaults():
    output = RequestedOutput("y")
    assert (output.binary, output.classification, output.parameters) == (None, 0, {})


def test_response_defaults():
    data = np.zeros(1, np.int32)
    response = InferResponse("m", 3, [InferOutput("y", DataType.INT32, (1,), data)])
    assert response.id is None
    assert response.parameters == {}
    assert response.outputs[0].parameters == {}


@pytest.mark.parametrize("cls", [InferInput, InferOutput, InferRequest, InferResponse])
def test_types_use_slots(cls):
    assert "__slots__" in vars(cls)
    assert dataclasses.is_dataclass(cls)


def test_slots_reject_unknown_attributes():
    request = InferRequest("m", [])
    with pytest.raises(AttributeError):
        request.priority = 3  # type: ignore[attr-defined]
