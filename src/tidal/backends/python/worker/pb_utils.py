"""``triton_python_backend_utils``: the API model code written for Triton's Python backend uses.

The worker registers this module under that name, so ``import triton_python_backend_utils as
pb_utils`` in a ``model.py`` finds it. BLS calls go through a bridge the worker installs.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import numpy as np

from .channel import datatype_of, deserialize_bytes, serialize_bytes

TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2
TRITONSERVER_MEMORY_CPU = 0
TRITONSERVER_MEMORY_CPU_PINNED = 1
TRITONSERVER_MEMORY_GPU = 2

# Triton's numbering of data types (the model configuration's TYPE_* enum).
_TYPE_NUMBERS: dict[int, Any] = {
    1: np.bool_,
    2: np.uint8,
    3: np.uint16,
    4: np.uint32,
    5: np.uint64,
    6: np.int8,
    7: np.int16,
    8: np.int32,
    9: np.int64,
    10: np.float16,
    11: np.float32,
    12: np.float64,
    13: np.object_,
}
_TYPE_NAMES = {
    "TYPE_BOOL": 1,
    "TYPE_UINT8": 2,
    "TYPE_UINT16": 3,
    "TYPE_UINT32": 4,
    "TYPE_UINT64": 5,
    "TYPE_INT8": 6,
    "TYPE_INT16": 7,
    "TYPE_INT32": 8,
    "TYPE_INT64": 9,
    "TYPE_FP16": 10,
    "TYPE_FP32": 11,
    "TYPE_FP64": 12,
    "TYPE_STRING": 13,
}


class TritonModelException(Exception):
    """Raise it from model code to fail the current call with its message."""


class TritonError:
    """An error to put on one ``InferenceResponse``; ``code`` picks the client's status."""

    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message = str(message)
        self._code = int(code)

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code

    def __repr__(self) -> str:
        return f"TritonError({self._message!r})"


ERROR_CODE_NAMES = {
    TritonError.UNKNOWN: "UNKNOWN",
    TritonError.INTERNAL: "INTERNAL",
    TritonError.NOT_FOUND: "NOT_FOUND",
    TritonError.INVALID_ARG: "INVALID_ARG",
    TritonError.UNAVAILABLE: "UNAVAILABLE",
    TritonError.UNSUPPORTED: "UNSUPPORTED",
    TritonError.ALREADY_EXISTS: "ALREADY_EXISTS",
    TritonError.CANCELLED: "CANCELLED",
}
ERROR_CODES = {name: code for code, name in ERROR_CODE_NAMES.items()}


class Tensor:
    """A named tensor backed by a numpy array (object arrays of ``bytes`` for BYTES)."""

    def __init__(self, name: str, data: np.ndarray, *, datatype: str | None = None) -> None:
        if not isinstance(data, np.ndarray):
            raise TritonModelException(
                f"tensor '{name}': data must be a numpy array, got {type(data).__name__}"
            )
        try:
            self._datatype = datatype or datatype_of(data)
        except TypeError as exc:
            raise TritonModelException(f"tensor '{name}': {exc}") from None
        if data.dtype.kind in "SU":  # fixed-width numpy strings become bytes objects
            data = np.array(
                [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in data.ravel()],
                dtype=object,
            ).reshape(data.shape)
        self._name = name
        self._data = data

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._data

    def triton_dtype(self) -> int:
        if self._datatype == "BYTES":
            return 13
        return 14 if self._datatype == "BF16" else _TYPE_NAMES.get(f"TYPE_{self._datatype}", 0)

    def shape(self) -> list[int]:
        return list(self._data.shape)

    def is_cpu(self) -> bool:
        return True

    def to_dlpack(self) -> Any:
        return self._data.__dlpack__()

    @staticmethod
    def from_dlpack(name: str, capsule: Any) -> Tensor:
        source = capsule if hasattr(capsule, "__dlpack__") else _Capsule(capsule)
        return Tensor(name, np.from_dlpack(source))

    def __repr__(self) -> str:
        return f"Tensor({self._name!r}, {self._datatype}, shape={list(self._data.shape)})"


class _Capsule:
    """Lets ``np.from_dlpack`` take a bare DLPack capsule (what ``torch.to_dlpack`` returns)."""

    def __init__(self, capsule: Any) -> None:
        self._capsule = capsule

    def __dlpack__(self, **_: Any) -> Any:
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)  # kDLCPU


class PreferredMemory:
    """Accepted for compatibility; every tensor lives in CPU memory here."""

    def __init__(self, preferred_memory_type: int = TRITONSERVER_MEMORY_CPU, device_id: int = 0):
        self.preferred_memory_type = preferred_memory_type
        self.preferred_device_id = device_id


class InferenceResponse:
    """The answer to one request: output tensors, or an error."""

    def __init__(
        self,
        output_tensors: Iterable[Tensor] | None = None,
        error: TritonError | None = None,
        parameters: dict[str, Any] | str | None = None,
    ) -> None:
        self._outputs = list(output_tensors or [])
        self._error = error
        self._parameters = parameters

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def parameters(self) -> str:
        if isinstance(self._parameters, str):
            return self._parameters
        return json.dumps(self._parameters or {}, separators=(",", ":"))


# The worker sets this to run BLS requests on the server: (request, wait) -> response, or an
# awaitable of it when ``wait`` is False.
_bls_call: Callable[[InferenceRequest, bool], Any] | None = None


class InferenceRequest:
    """A request: handed to ``execute``, or built by model code to call another model (BLS)."""

    def __init__(
        self,
        model_name: str,
        requested_output_names: Iterable[str],
        inputs: Iterable[Tensor],
        request_id: str = "",
        correlation_id: int | str = 0,
        model_version: int = -1,
        flags: int = 0,
        timeout: int = 0,
        preferred_memory: PreferredMemory | None = None,
        trace: Any = None,
        parameters: dict[str, Any] | str | None = None,
    ) -> None:
        if isinstance(parameters, str):
            parameters = json.loads(parameters) if parameters else {}
        for key, value in (parameters or {}).items():
            if not isinstance(key, str) or not isinstance(value, bool | int | str):
                raise TritonModelException(
                    f"request parameter '{key}': keys must be str and values bool, int or str"
                )
        self._set(model_name, int(model_version), list(inputs), list(requested_output_names))
        self._request_id = request_id
        self._correlation_id = correlation_id
        self._flags = flags
        self.timeout = int(timeout)
        self._parameters: dict[str, Any] = dict(parameters or {})

    @classmethod
    def _incoming(
        cls,
        inputs: list[Tensor],
        requested: list[str],
        request_id: str,
        correlation_id: int | str,
        flags: int,
        parameters: dict[str, Any],
    ) -> InferenceRequest:
        """A request the server hands to ``execute`` (its parameters are already checked)."""
        request = cls.__new__(cls)
        request._set("", -1, inputs, requested)
        request._request_id = request_id
        request._correlation_id = correlation_id
        request._flags = flags
        request.timeout = 0
        request._parameters = parameters
        return request

    def _set(self, model_name: str, version: int, inputs: list, requested: list) -> None:
        self.model_name = model_name
        self.model_version = version
        self._inputs = inputs
        self._requested = requested

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def request_id(self) -> str:
        return self._request_id

    def correlation_id(self) -> int | str:
        return self._correlation_id

    def flags(self) -> int:
        return self._flags

    def requested_output_names(self) -> set[str]:
        return set(self._requested)

    def parameters(self) -> str:
        return json.dumps(self._parameters, separators=(",", ":"))

    def is_cancelled(self) -> bool:
        return False

    def get_response_sender(self) -> Any:
        raise TritonModelException("decoupled models are not supported by tidal")

    def set_release_flags(self, flags: int) -> None:
        if flags != TRITONSERVER_REQUEST_RELEASE_ALL:
            raise TritonModelException("request rescheduling is not supported by tidal")

    def exec(self, decoupled: bool = False) -> InferenceResponse:
        """Run this request on the server and wait for its response."""
        return _bridge(decoupled)(self, True)

    def async_exec(self, decoupled: bool = False) -> Awaitable[InferenceResponse]:
        """Start this request on the server; await the result (inside ``async def execute``)."""
        return _bridge(decoupled)(self, False)


def _bridge(decoupled: bool) -> Callable[[InferenceRequest, bool], Any]:
    if decoupled:
        raise TritonModelException("BLS calls with decoupled=True are not supported by tidal")
    if _bls_call is None:
        raise TritonModelException("BLS is not available in this process")
    return _bls_call


class ModelConfig:
    """The configuration handed to ``auto_complete_config``: read it, add to it, return it."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        for key in ("input", "output"):
            self._config.setdefault(key, [])

    def as_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._config)

    def set_max_batch_size(self, max_batch_size: int) -> None:
        if not isinstance(max_batch_size, int) or max_batch_size < 0:
            raise ValueError(f"max_batch_size must be a non-negative integer: {max_batch_size}")
        configured = int(self._config.get("max_batch_size") or 0)
        if configured > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {configured}, but "
                f"auto_complete_config set max_batch_size {max_batch_size}"
            )
        if configured == 0:
            self._config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        self._config.setdefault("dynamic_batching", {})

    def set_model_transaction_policy(self, policy: dict[str, Any]) -> None:
        unknown = set(policy) - {"decoupled"}
        if unknown:
            raise ValueError(f"unknown model_transaction_policy field(s): {sorted(unknown)}")
        self._config["model_transaction_policy"] = dict(policy)

    def add_input(self, input: dict[str, Any]) -> None:
        self._add("input", input)

    def add_output(self, output: dict[str, Any]) -> None:
        self._add("output", output)

    def _add(self, kind: str, tensor: dict[str, Any]) -> None:
        if not isinstance(tensor, dict) or "name" not in tensor:
            raise ValueError(f"{kind} must be a dict with at least a 'name': {tensor!r}")
        for key in ("data_type", "dims"):
            if key not in tensor:
                raise ValueError(f"{kind} '{tensor['name']}' has no '{key}'")
        existing = next((t for t in self._config[kind] if t.get("name") == tensor["name"]), None)
        if existing is None:
            self._config[kind].append(dict(tensor))
            return
        for key in ("data_type", "dims"):
            have = existing.get(key)
            if have in (None, "", [], "TYPE_INVALID"):
                existing[key] = tensor[key]
            elif _same(have, tensor[key]):
                continue
            else:
                raise ValueError(
                    f"{kind} '{tensor['name']}' has {key} {have} in the configuration but "
                    f"auto_complete_config set {tensor[key]}"
                )
        for key, value in tensor.items():
            existing.setdefault(key, value)


def _same(have: Any, want: Any) -> bool:
    if isinstance(have, list | tuple) and isinstance(want, list | tuple):
        return [int(d) for d in have] == [int(d) for d in want]
    return have == want


class Logger:
    """Triton's model logger; lines go to the server's standard error."""

    INFO, WARNING, ERROR, VERBOSE = 0, 1, 2, 3
    _LABELS = {0: "INFO", 1: "WARNING", 2: "ERROR", 3: "VERBOSE"}
    prefix = "python model"

    @classmethod
    def log(cls, message: str, level: int = 0) -> None:
        label = cls._LABELS.get(level, "INFO")
        sys.stderr.write(f"{label} [{cls.prefix}] {message}\n")
        sys.stderr.flush()

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.log(message, cls.INFO)

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.log(message, cls.WARNING)

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.log(message, cls.ERROR)

    @classmethod
    def log_verbose(cls, message: str) -> None:
        cls.log(message, cls.VERBOSE)


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    """The input called ``name``; None when the request left that (optional) input out."""
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


def get_input_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in model_config.get("input", []) if t.get("name") == name), None)


def get_output_config_by_name(model_config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in model_config.get("output", []) if t.get("name") == name), None)


def triton_to_numpy_type(data_type: int) -> Any:
    """The numpy type of a Triton type number (``np.object_`` for strings)."""
    return _TYPE_NUMBERS.get(data_type)


def numpy_to_triton_type(data_type: Any) -> int | None:
    dtype = np.dtype(data_type)
    if dtype.kind in "OSU":
        return 13
    return next((n for n, t in _TYPE_NUMBERS.items() if n != 13 and np.dtype(t) == dtype), None)


def triton_string_to_numpy(triton_type_string: str) -> Any:
    """The numpy type of a config data type name such as ``"TYPE_FP32"``."""
    return _TYPE_NUMBERS.get(_TYPE_NAMES.get(triton_type_string, 0))


def serialize_byte_tensor(input_tensor: np.ndarray) -> np.ndarray | None:
    """An object array holding Triton's length-prefixed serialization of a BYTES tensor."""
    if input_tensor.size == 0:
        return np.empty([0], dtype=np.object_)
    return np.asarray(serialize_bytes(input_tensor), dtype=np.object_)


def deserialize_bytes_tensor(encoded_tensor: bytes) -> np.ndarray:
    """The flat object array of ``bytes`` encoded by ``serialize_byte_tensor``."""
    return deserialize_bytes(encoded_tensor)
