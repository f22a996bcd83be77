"""Checking a request against the model's configuration before it is queued."""

from __future__ import annotations

from tidal.config.model_config import ModelConfig, TensorConfig
from tidal.core.datatypes import DataType
from tidal.core.errors import InferenceError
from tidal.core.types import InferRequest

_CLASSIFIABLE = frozenset(DataType) - {DataType.BYTES, DataType.BOOL, DataType.BF16}


def check_request(request: InferRequest, config: ModelConfig) -> None:
    """Raise INVALID_ARG naming the model and tensor for anything the model cannot take."""
    batch_sizes = _check_inputs(request, config)
    if batch_sizes:
        _check_batch(config, batch_sizes)
    if request.outputs:
        _check_outputs(request, config)


def _check_inputs(request: InferRequest, config: ModelConfig) -> set[int]:
    """Each input known once, of the right type and shape; every required one present.
    Returns the batch sizes the inputs carry (empty for a model that does not batch)."""
    model = config.name
    seen: set[str] = set()
    batch_sizes: set[int] = set()
    for tensor in request.inputs:
        spec = config.input(tensor.name)
        if spec is None:
            raise InferenceError.invalid(
                f"unexpected inference input '{tensor.name}' for model '{model}'"
            )
        if tensor.name in seen:
            raise InferenceError.invalid(
                f"input '{tensor.name}' appears more than once in the request for model '{model}'"
            )
        seen.add(tensor.name)
        if tensor.datatype is not spec.data_type:
            expected = spec.data_type.value if spec.data_type else "?"
            raise InferenceError.invalid(
                f"inference input '{tensor.name}' data-type is '{tensor.datatype.value}', but "
                f"model '{model}' expects '{expected}'"
            )
        _check_shape(config, spec, tensor.shape)
        if config.batching:
            batch_sizes.add(tensor.shape[0])
    if len(seen) < len(config.inputs):
        missing = [t.name for t in config.inputs if not t.optional and t.name not in seen]
        if missing:
            raise InferenceError.invalid(
                f"expected {len(config.inputs)} inputs but got {len(request.inputs)} inputs "
                f"for model '{model}': missing required input(s) {missing}"
            )
    return batch_sizes


def _check_batch(config: ModelConfig, batch_sizes: set[int]) -> None:
    if len(batch_sizes) > 1:
        raise InferenceError.invalid(
            f"inputs of a request for model '{config.name}' must share one batch size, got "
            f"{sorted(batch_sizes)}"
        )
    (batch,) = batch_sizes
    if not 1 <= batch <= config.max_batch_size:
        raise InferenceError.invalid(
            f"inference request batch-size must be <= {config.max_batch_size} for "
            f"'{config.name}', got {batch}"
        )


def _check_outputs(request: InferRequest, config: ModelConfig) -> None:
    model = config.name
    for output in request.outputs or ():
        spec = config.output(output.name)
        if spec is None:
            raise InferenceError.invalid(
                f"unexpected inference output '{output.name}' for model '{model}'"
            )
        if output.classification and spec.data_type not in _CLASSIFIABLE:
            raise InferenceError.invalid(
                f"output '{output.name}' of model '{model}' has datatype "
                f"{spec.data_type.value if spec.data_type else '?'}, which cannot be classified"
            )


def _check_shape(config: ModelConfig, spec: TensorConfig, shape: tuple[int, ...]) -> None:
    dims = spec.dims
    if config.batching:
        expected = (-1, *dims)
        matches = len(shape) == len(expected) and _fits(shape[1:], dims)
    else:
        expected = dims
        matches = len(shape) == len(dims) and _fits(shape, dims)
    if not matches:
        raise InferenceError.invalid(
            f"unexpected shape for input '{spec.name}' for model '{config.name}'. Expected "
            f"{_show(expected)}, got {_show(shape)}"
        )


def _fits(shape: tuple[int, ...], dims: tuple[int, ...]) -> bool:
    return all(want == -1 or want == have for want, have in zip(dims, shape, strict=True))


def _show(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
