"""Inference requests and responses as plain data: numpy arrays, no transport details."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tidal.core.datatypes import DataType

Parameters = dict[str, Any]


@dataclass(slots=True)
class InferInput:
    """One input tensor. BYTES data is a numpy object array of ``bytes``."""

    name: str
    datatype: DataType
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for, with its encoding wishes.

    ``binary`` is None when the client left it to the request-wide default.
    ``classification`` > 0 asks for the top-k classes instead of the raw tensor.
    """

    name: str
    binary: bool | None = None
    classification: int = 0
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    """A request for one model. ``model_version`` None means the highest ready version.

    ``outputs`` None means every output of the model.
    """

    model_name: str
    inputs: list[InferInput]
    model_version: int | None = None
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferOutput:
    """One output tensor."""

    name: str
    datatype: DataType
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferResponse:
    """The result of one request."""

    model_name: str
    model_version: int
    outputs: list[InferOutput]
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
