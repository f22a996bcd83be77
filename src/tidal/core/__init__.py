"""Transport-free core types: data types, tensors, requests, responses, errors, states."""

from tidal.core.datatypes import DataType
from tidal.core.errors import ErrorCode, InferenceError
from tidal.core.states import ModelState
from tidal.core.types import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
)

__all__ = [
    "DataType",
    "ErrorCode",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InferenceError",
    "ModelState",
    "RequestedOutput",
]
