"""Decoding v2 gRPC messages (``ModelInferRequest`` and friends) into core types.

Raw tensor bytes become arrays with ``np.frombuffer`` (no per-element Python); the typed
``InferTensorContents`` fields are accepted for every datatype that has one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from tidal.core.datatypes import DataType
from tidal.core.errors import InferenceError
from tidal.core.types import InferInput, InferRequest, RequestedOutput
from tidal.protocol.tensor_bytes import element_count, tensor_from_bytes

__all__ = [
    "decode_infer_request",
    "decode_load_parameters",
    "decode_parameters",
    "parse_version",
]

# Which InferTensorContents field carries each datatype (FP16 and BF16 have none).
CONTENTS_FIELD: dict[DataType, str] = {
    DataType.BOOL: "bool_contents",
    DataType.INT8: "int_contents",
    DataType.INT16: "int_contents",
    DataType.INT32: "int_contents",
    DataType.INT64: "int64_contents",
    DataType.UINT8: "uint_contents",
    DataType.UINT16: "uint_contents",
    DataType.UINT32: "uint_contents",
    DataType.UINT64: "uint64_contents",
    DataType.FP32: "fp32_contents",
    DataType.FP64: "fp64_contents",
    DataType.BYTES: "bytes_contents",
}
_ALL_CONTENTS_FIELDS = frozenset(CONTENTS_FIELD.values())
# numpy type each typed field is read as before it is narrowed to the input's type.
_FIELD_DTYPE = {
    "bool_contents": np.bool_,
    "int_contents": np.int32,
    "int64_contents": np.int64,
    "uint_contents": np.uint32,
    "uint64_contents": np.uint64,
    "fp32_contents": np.float32,
    "fp64_contents": np.float64,
}
_SHARED_MEMORY = "shared_memory_region"
_DATATYPES = {datatype.value: datatype for datatype in DataType}
_FIXED_DTYPES: dict[DataType, np.dtype] = {
    d: d.numpy_dtype for d in DataType if d is not DataType.BYTES
}


def parse_version(model: str, text: str) -> int | None:
    """A request's ``model_version`` string: empty means the highest ready version."""
    if not text:
        return None
    if not text.isdigit() or not text.isascii():
        raise InferenceError.invalid(
            f"model '{model}': version '{text}' must be a non-negative integer"
        )
    return int(text)


def decode_parameters(parameters: Mapping[str, pb.InferParameter]) -> dict[str, Any]:
    """``map<string, InferParameter>`` as plain Python values."""
    decoded: dict[str, Any] = {}
    for key, value in parameters.items():
        which = value.WhichOneof("parameter_choice")
        decoded[key] = None if which is None else getattr(value, which)
    return decoded


def decode_infer_request(message: pb.ModelInferRequest) -> InferRequest:
    """The core request of a ``ModelInferRequest``; INVALID_ARG for anything malformed."""
    model = message.model_name
    raw = message.raw_input_contents
    tensors = message.inputs
    if raw and len(raw) != len(tensors):
        raise InferenceError.invalid(
            f"request for model '{model}' has {len(tensors)} inputs but {len(raw)} "
            "raw_input_contents entries: send raw contents for every input or for none"
        )
    inputs = [
        _decode_input(tensor, raw[index] if raw else None) for index, tensor in enumerate(tensors)
    ]
    outputs = [_decode_output(output) for output in message.outputs]
    return InferRequest(
        model_name=model,
        inputs=inputs,
        model_version=parse_version(model, message.model_version),
        id=message.id or None,
        outputs=outputs or None,
        parameters=decode_parameters(message.parameters) if message.parameters else {},
    )


def _decode_input(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> InferInput:
    name = tensor.name
    datatype = _DATATYPES.get(tensor.datatype)
    if datatype is None:
        raise InferenceError.invalid(f"input '{name}' has an unknown datatype '{tensor.datatype}'")
    shape = tuple(tensor.shape)
    if shape and min(shape) < 0:
        raise InferenceError.invalid(
            f"input '{name}': shape must hold non-negative integers, got {list(shape)}"
        )
    parameters = decode_parameters(tensor.parameters) if tensor.parameters else {}
    if _SHARED_MEMORY in parameters:
        raise InferenceError.unsupported(
            f"input '{name}': shared memory is not supported, send the tensor in the request"
        )
    if raw is None:
        data = _typed_contents(name, datatype, shape, tensor.contents)
    elif tensor.HasField("contents"):
        raise InferenceError.invalid(
            f"input '{name}' has both typed contents and raw_input_contents: when "
            "raw_input_contents is used, every input's data must be in it"
        )
    else:
        dtype = _FIXED_DTYPES.get(datatype)
        if dtype is not None and len(raw) == math.prod(shape) * dtype.itemsize:
            data = np.frombuffer(raw, dtype).reshape(shape)  # the common case, kept short
        else:  # BYTES, and the clear error for a wrong size
            data = tensor_from_bytes(name, datatype, shape, raw)
    return InferInput(name, datatype, shape, data, parameters)


def _typed_contents(
    name: str, datatype: DataType, shape: tuple[int, ...], contents: pb.InferTensorContents
) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InferenceError.invalid(
            f"input '{name}': {datatype.value} has no typed contents field, send its data in "
            "raw_input_contents"
        )
    stray = [f for f in _ALL_CONTENTS_FIELDS if f != field and len(getattr(contents, f))]
    if stray:
        raise InferenceError.invalid(
            f"input '{name}' is {datatype.value}, whose data belongs in contents.{field}, but "
            f"the request fills contents.{', contents.'.join(sorted(stray))}"
        )
    values = getattr(contents, field)
    expected = element_count(shape)
    if len(values) != expected:
        raise InferenceError.invalid(
            f"input '{name}': got {len(values)} elements in contents.{field}, but shape "
            f"{list(shape)} needs {expected}"
        )
    if datatype is DataType.BYTES:
        array = np.empty(expected, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    array = np.array(values, dtype=_FIELD_DTYPE[field])
    target = datatype.numpy_dtype
    if target != array.dtype and array.size:
        info = np.iinfo(target)  # only the 8- and 16-bit integers are narrowed
        if array.min() < info.min or array.max() > info.max:
            raise InferenceError.invalid(
                f"input '{name}': a value in contents.{field} is out of range for {datatype.value}"
            )
    return array.astype(target, copy=False).reshape(shape)


def _decode_output(output: pb.ModelInferRequest.InferRequestedOutputTensor) -> RequestedOutput:
    name = output.name
    parameters = decode_parameters(output.parameters) if output.parameters else {}
    if _SHARED_MEMORY in parameters:
        raise InferenceError.unsupported(
            f"output '{name}': shared memory is not supported, the tensor comes back in "
            "raw_output_contents"
        )
    parameters.pop("binary_data", None)  # gRPC always returns raw bytes; HTTP-only hint
    classification = parameters.pop("classification", 0)
    if (
        not isinstance(classification, int)
        or isinstance(classification, bool)
        or (classification < 0)
    ):
        raise InferenceError.invalid(
            f"output '{name}': classification must be a non-negative integer"
        )
    return RequestedOutput(name, None, classification, parameters)


def decode_load_parameters(
    model: str, parameters: Mapping[str, pb.ModelRepositoryParameter]
) -> tuple[str | None, dict[str, bytes] | None]:
    """A load request's ``config`` (JSON text) and its ``file:<path>`` contents, keyed by the
    parameter name (``file:`` prefix kept), as the facade's ``load_model`` takes them."""
    config: str | None = None
    files: dict[str, bytes] = {}
    for key, value in parameters.items():
        which = value.WhichOneof("parameter_choice")
        if key == "config":
            if which != "string_param":
                raise InferenceError.invalid(
                    f"load of model '{model}': parameter 'config' must be a string_param "
                    "holding the model configuration as JSON"
                )
            config = value.string_param
        elif key.startswith("file:"):
            if which != "bytes_param":
                raise InferenceError.invalid(
                    f"load of model '{model}': parameter '{key}' must be a bytes_param"
                )
            files[key] = value.bytes_param
        else:
            raise InferenceError.invalid(
                f"Unrecognized load parameter '{key}' (expected 'config' or "
                "'file:<version>/<file name>')"
            )
    return config, files or None
