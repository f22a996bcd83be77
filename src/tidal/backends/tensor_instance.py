"""A model instance for runtimes that map named arrays to named arrays.

It turns a batch of requests into one call of the runtime (concatenating along the batch
dimension) and splits the outputs back per request, so runtime adapters stay small.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from time import perf_counter_ns

import numpy as np

from tidal.backends.base import ExecuteResult
from tidal.config.model_config import ModelConfig, TensorConfig
from tidal.core.datatypes import DataType
from tidal.core.errors import InferenceError
from tidal.core.types import InferOutput, InferRequest, InferResponse


class TensorModelInstance(ABC):
    """Base for instances whose runtime runs ``{name: array} -> [array]``."""

    def __init__(self, config: ModelConfig, version: int) -> None:
        self.config = config
        self.version = version
        # (input_ns, output_ns) of the last execute: see ModelInstance
        self.io_ns: tuple[int, int] = (0, 0)
        self._input_ns = self._output_ns = 0
        self._inputs = {t.name: t for t in config.inputs}
        self._outputs = {t.name: t for t in config.outputs}
        self._all_output_names = [t.name for t in config.outputs]

    @abstractmethod
    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        """Run the model once; raise on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook, most runtimes hold nothing
        """Nothing to release by default."""

    def execute(self, batch: Sequence[InferRequest]) -> ExecuteResult:
        self._input_ns = self._output_ns = 0
        try:
            if len(batch) == 1 or not self.config.batching:
                # Without a batch dimension requests cannot be concatenated: run each alone.
                return [self._execute_one(request) for request in batch]
            try:
                return self._execute_merged(batch)
            except Exception:
                # One bad request must not fail its neighbours: run each alone to find it.
                return [self._execute_one(request) for request in batch]
        finally:
            self.io_ns = (self._input_ns, self._output_ns)

    def _execute_one(self, request: InferRequest) -> InferResponse | InferenceError:
        names = self._output_names([request])
        try:
            started = perf_counter_ns()
            feeds = self._feeds_of(request)
            ran = perf_counter_ns()
            arrays = self.run(feeds, names)
            answered = perf_counter_ns()
            response = self._response(request, names, arrays, self._batch_size(request))
            self._input_ns += ran - started
            self._output_ns += perf_counter_ns() - answered
            return response
        except Exception as exc:
            return self._failure(exc)

    def _execute_merged(self, batch: Sequence[InferRequest]) -> ExecuteResult:
        started = perf_counter_ns()
        names = self._output_names(batch)
        per_request = [self._feeds_of(request) for request in batch]
        feeds = {
            name: np.concatenate([feeds[name] for feeds in per_request]) for name in per_request[0]
        }
        ran = perf_counter_ns()
        arrays = self.run(feeds, names)
        answered = perf_counter_ns()
        sizes = [self._batch_size(request) for request in batch]
        offsets = np.cumsum(sizes)[:-1]
        pieces = [np.split(array, offsets) for array in arrays]
        responses: ExecuteResult = [
            self._response(request, names, [piece[index] for piece in pieces], sizes[index])
            for index, request in enumerate(batch)
        ]
        self._input_ns += ran - started
        self._output_ns += perf_counter_ns() - answered
        return responses

    def _feeds_of(self, request: InferRequest) -> dict[str, np.ndarray]:
        feeds = {}
        for tensor in request.inputs:
            spec = self._inputs[tensor.name]
            data = tensor.data
            if spec.reshape is not None:
                leading = data.shape[:1] if self.config.batching else ()
                data = data.reshape(leading + spec.reshape)
            feeds[tensor.name] = data
        return feeds

    def _batch_size(self, request: InferRequest) -> int:
        if not self.config.batching or not request.inputs:
            return 1
        return request.inputs[0].data.shape[0]

    def _output_names(self, batch: Sequence[InferRequest]) -> list[str]:
        wanted: dict[str, None] = {}
        for request in batch:
            if not request.outputs:  # None or an empty list: every output
                return self._all_output_names
            wanted.update((o.name, None) for o in request.outputs)
        return list(wanted)

    def _response(
        self,
        request: InferRequest,
        names: list[str],
        arrays: Sequence[np.ndarray],
        batch_size: int,
    ) -> InferResponse:
        requested = {output.name for output in request.outputs} if request.outputs else None
        outputs = []
        for name, array in zip(names, arrays, strict=True):
            if requested is not None and name not in requested:
                continue
            spec = self._outputs[name]
            array = _as_declared(array, spec, batch_size if self.config.batching else None)
            data_type = spec.data_type or DataType.from_numpy(array.dtype)
            outputs.append(InferOutput(name, data_type, array.shape, array))
        return InferResponse(
            model_name=request.model_name,
            model_version=self.version,
            outputs=outputs,
            id=request.id,
        )

    def _failure(self, exc: Exception) -> InferenceError:
        if isinstance(exc, InferenceError):
            return exc
        return InferenceError.internal(
            f"model '{self.config.name}' version {self.version} failed to execute: {exc}"
        )


def _as_declared(array: np.ndarray, spec: TensorConfig, batch: int | None) -> np.ndarray:
    """Give a runtime's output the shape and element type the configuration declares."""
    if spec.reshape is not None and all(d > 0 for d in spec.dims):
        leading = (batch,) if batch is not None else ()
        array = array.reshape(leading + spec.dims)
    if spec.data_type is DataType.BYTES:
        if array.dtype != object or (array.size and isinstance(array.flat[0], str)):
            array = np.array(
                [v.encode() if isinstance(v, str) else bytes(v) for v in array.ravel()],
                dtype=object,
            ).reshape(array.shape)
    elif spec.data_type is not None and array.dtype != spec.data_type.numpy_dtype:
        array = array.astype(spec.data_type.numpy_dtype, copy=False)
    return array
