"""The PyTorch backend: TorchScript files (``model.pt``, from ``torch.jit.save``), named and
ordered the way Triton's PyTorch backend does it.

PyTorch is an optional extra (``pip install 'tidal[torch]'``): it is imported when the first
TorchScript model loads, never by ``import tidal``.

Naming, as Triton: configured inputs that are all ``forward()`` argument names bind by name;
otherwise names ending in ``__<index>`` (``INPUT__0``) bind to that argument position;
otherwise the configuration's order is the argument order. A ``forward`` taking one
``Dict[str, Tensor]`` receives every input by its configured name. Outputs named
``<name>__<index>`` pick that element of the returned tuple; otherwise configuration order.
``TYPE_STRING`` tensors travel as ``List[str]``.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tidal.backends.tensor_instance import TensorModelInstance
from tidal.config import paths
from tidal.config.model_config import DynamicBatching, ModelConfig, TensorConfig
from tidal.config.pbtxt import ConfigError
from tidal.core.datatypes import DataType

logger = logging.getLogger(__name__)

DEFAULT_MODEL_FILENAME = "model.pt"
DEFAULT_MAX_BATCH_SIZE = 4  # what `tidal config generate` picks, as ONNX auto-complete does

# DataType -> attribute of the torch module; BYTES travels as List[str] instead.
_TORCH_TYPES: dict[DataType, str] = {
    DataType.BOOL: "bool",
    DataType.UINT8: "uint8",
    DataType.INT8: "int8",
    DataType.INT16: "int16",
    DataType.INT32: "int32",
    DataType.INT64: "int64",
    DataType.FP16: "float16",
    DataType.BF16: "bfloat16",
    DataType.FP32: "float32",
    DataType.FP64: "float64",
}
_INDEXED = re.compile(r"__(\d+)$")

__all__ = ["TorchScriptBackend", "TorchScriptInstance", "complete_by_running"]


class TorchScriptBackend:
    """Serves TorchScript modules with PyTorch (``platform: "pytorch_libtorch"``)."""

    name = "pytorch"

    def auto_complete(self, config: ModelConfig, version_dir: Path) -> ModelConfig:
        """Like Triton, nothing can be read from a TorchScript file without running it, so
        a missing input or output list is an error that points at ``tidal config generate``."""
        if not config.inputs or not config.outputs:
            missing = "inputs" if not config.inputs else "outputs"
            raise ConfigError(
                f"model '{config.name}': a TorchScript model needs its {missing} in "
                "config.pbtxt; `tidal config generate <model folder> --input NAME:TYPE:DIMS` "
                "writes a complete one"
            )
        return config

    def create_instance(
        self, config: ModelConfig, version_dir: Path, device: str, version: int
    ) -> TorchScriptInstance:
        torch = import_torch(config.name)
        _check_types(config)
        _apply_thread_parameters(torch, config)
        target = _device(torch, config, device)
        module = load_module(config, version_dir, target)
        plan = _Plan.build(config, _forward_arguments(config, module))
        return TorchScriptInstance(config, version, module, target, plan)


class TorchScriptInstance(TensorModelInstance):
    """One loaded module. PyTorch releases the GIL inside its operators, so instances run
    concurrently on their threads."""

    def __init__(
        self, config: ModelConfig, version: int, module: Any, device: Any, plan: _Plan
    ) -> None:
        super().__init__(config, version)
        self._torch = import_torch(config.name)
        self._module = module
        self._device = device
        self._plan = plan
        self._inference_mode = _bool_parameter(config, "INFERENCE_MODE", True)
        self._optimized = not _bool_parameter(config, "DISABLE_OPTIMIZED_EXECUTION", False)

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        torch = self._torch
        values = {name: self._to_torch(name, array) for name, array in feeds.items()}
        grad_off = torch.inference_mode() if self._inference_mode else torch.no_grad()
        with grad_off, torch.jit.optimized_execution(self._optimized):
            if self._plan.dict_input:
                result = self._module(values)
            else:
                args: list[Any] = [None] * self._plan.argument_count
                for name, value in values.items():
                    args[self._plan.inputs[name]] = value
                result = self._module(*args)
        returned = _flatten(result)
        batch = next(iter(feeds.values())).shape[0] if self.config.batching and feeds else None
        arrays = []
        for name in output_names:
            index = self._plan.outputs[name]
            if index >= len(returned):
                raise RuntimeError(
                    f"output '{name}' is element {index} of forward()'s result, but the "
                    f"model returned {len(returned)} value(s)"
                )
            arrays.append(self._to_numpy(name, returned[index], batch))
        return arrays

    def close(self) -> None:
        self._module = None

    def _to_torch(self, name: str, array: np.ndarray) -> Any:
        spec = self._inputs[name]
        if spec.data_type is DataType.BYTES:
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.ravel()]
        if spec.data_type is DataType.BF16:  # carried as raw uint16 bits
            array = array.view(np.int16)
        if not array.flags.writeable or not array.flags.c_contiguous:
            array = np.array(array)  # torch keeps a view of the memory: give it its own copy
        tensor = self._torch.from_numpy(array)
        if spec.data_type is DataType.BF16:
            tensor = tensor.view(self._torch.bfloat16)
        return tensor.to(self._device)

    def _to_numpy(self, name: str, value: Any, batch: int | None) -> np.ndarray:
        spec = self._outputs[name]
        if spec.data_type is DataType.BYTES:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RuntimeError(
                    f"output '{name}' is TYPE_STRING but the model returned "
                    f"{type(value).__name__}, not a List[str]"
                )
            array = np.array([v.encode("utf-8") for v in value], dtype=object)
            return array.reshape((batch, -1) if batch else _fixed(spec.dims, len(value)))
        if not isinstance(value, self._torch.Tensor):
            raise RuntimeError(
                f"output '{name}' must be a tensor, the model returned {type(value).__name__}"
            )
        expected = getattr(self._torch, _TORCH_TYPES[spec.data_type])  # type: ignore[index]
        if value.dtype != expected:
            raise RuntimeError(
                f"configuration expects datatype {spec.data_type.config_name} for output "  # type: ignore[union-attr]
                f"'{name}', model provides {str(value.dtype).removeprefix('torch.')}"
            )
        value = value.detach().cpu()
        if spec.data_type is DataType.BF16:
            return value.view(self._torch.int16).numpy().view(np.uint16)
        return value.numpy()


# -- loading ---------------------------------------------------------------------------------


def import_torch(model: str) -> Any:
    """The torch module, or a ``ConfigError`` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ConfigError(
            f"model '{model}': TorchScript models need PyTorch; install it with "
            "pip install 'tidal[torch]'"
        ) from None
    return torch


def model_file(config: ModelConfig, version_dir: Path) -> Path:
    return paths.model_file(config, version_dir, DEFAULT_MODEL_FILENAME)


def load_module(config: ModelConfig, version_dir: Path, device: Any = "cpu") -> Any:
    """The TorchScript module of a version, in evaluation mode, on ``device``."""
    torch = import_torch(config.name)
    path = model_file(config, version_dir)
    try:
        with warnings.catch_warnings():
            # PyTorch marks torch.jit deprecated, but TorchScript files are what Triton's
            # PyTorch backend serves: the warning is not the server operator's to act on.
            warnings.filterwarnings("ignore", r".*torch\.jit", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
    except Exception as exc:  # torch raises RuntimeError, ValueError, pickle errors, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        repository = version_dir.parent.parent  # clients see files from the repository
        reason = paths.scrub_paths(reason, repository)
        raise ConfigError(
            f"model '{config.name}': cannot load '{paths.scrub_paths(str(path), repository)}' "
            "as TorchScript (save it with "
            f"torch.jit.save): {reason}"
        ) from None
    module.eval()
    return module


def _device(torch: Any, config: ModelConfig, device: str) -> Any:
    if not device.startswith("gpu"):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"model '{config.name}': instance_group kind KIND_GPU needs CUDA, which this "
            "PyTorch build cannot use here"
        )
    return torch.device(f"cuda:{int(device.partition(':')[2] or 0)}")


def _check_types(config: ModelConfig) -> None:
    for kind, tensors in (("input", config.inputs), ("output", config.outputs)):
        for tensor in tensors:
            if tensor.data_type is not DataType.BYTES and tensor.data_type not in _TORCH_TYPES:
                configured = tensor.data_type.config_name if tensor.data_type else "TYPE_INVALID"
                raise ConfigError(
                    f"model '{config.name}': {kind} '{tensor.name}' has data_type {configured}, "
                    "which the PyTorch backend does not support"
                )


def _apply_thread_parameters(torch: Any, config: ModelConfig) -> None:
    """Triton's INTRA_OP_THREAD_COUNT / INTER_OP_THREAD_COUNT; like Triton's, they set
    PyTorch's process-wide thread pools."""
    intra = _int_parameter(config, "INTRA_OP_THREAD_COUNT")
    if intra > 0:
        torch.set_num_threads(intra)
    inter = _int_parameter(config, "INTER_OP_THREAD_COUNT")
    if inter > 0 and torch.get_num_interop_threads() != inter:
        try:
            torch.set_num_interop_threads(inter)
        except RuntimeError as exc:  # only possible before PyTorch's first parallel work
            logger.warning("model '%s': INTER_OP_THREAD_COUNT not applied: %s", config.name, exc)


def _forward_arguments(config: ModelConfig, module: Any) -> list[tuple[str, str]]:
    """``(name, type kind)`` of each ``forward()`` argument after ``self``."""
    try:
        arguments = module.forward.schema.arguments
    except (AttributeError, RuntimeError):
        raise ConfigError(
            f"model '{config.name}': the TorchScript module has no forward()"
        ) from None
    described = [(a.name, str(a.type.kind())) for a in arguments]
    if described and described[0][1] == "ClassType":
        described = described[1:]
    return described


class _Plan:
    """Where each configured input goes in ``forward()`` and where each output comes from."""

    def __init__(
        self, dict_input: bool, argument_count: int, inputs: dict[str, int], outputs: dict[str, int]
    ) -> None:
        self.dict_input = dict_input
        self.argument_count = argument_count
        self.inputs = inputs
        self.outputs = outputs

    @classmethod
    def build(cls, config: ModelConfig, arguments: list[tuple[str, str]]) -> _Plan:
        where = f"model '{config.name}'"
        outputs = output_positions([t.name for t in config.outputs])
        if len(arguments) == 1 and arguments[0][1] == "DictType":
            return cls(True, 1, {}, outputs)
        for name, kind in arguments:
            if kind not in ("TensorType", "ListType", "OptionalType"):
                raise ConfigError(
                    f"{where}: forward() argument '{name}' has type {kind}; only Tensor, "
                    "List[str], Optional[Tensor] or a single Dict[str, Tensor] are supported"
                )
        names = [t.name for t in config.inputs]
        if len(arguments) != len(names):
            raise ConfigError(
                f"{where}: the configuration has {len(names)} input(s) but forward() takes "
                f"{len(arguments)}: {', '.join(n for n, _ in arguments)}"
            )
        inputs = input_positions(names, [n for n, _ in arguments])
        for name, position in inputs.items():
            if position >= len(arguments):
                raise ConfigError(
                    f"{where}: input '{name}' names argument index {position}, but forward() "
                    f"takes {len(arguments)} argument(s)"
                )
        if len(set(inputs.values())) != len(inputs):
            raise ConfigError(f"{where}: two inputs name the same forward() argument index")
        for tensor in config.inputs:
            kind = arguments[inputs[tensor.name]][1]
            if (tensor.data_type is DataType.BYTES) != (kind == "ListType"):
                configured = tensor.data_type.config_name if tensor.data_type else "TYPE_INVALID"
                raise ConfigError(
                    f"{where}: input '{tensor.name}' is {configured} but its forward() argument "
                    f"is a {kind}; TYPE_STRING goes with List[str]"
                )
        return cls(False, len(arguments), inputs, outputs)


def input_positions(names: Sequence[str], arguments: Sequence[str]) -> dict[str, int]:
    """Argument position of each configured input: by argument name when every input is one,
    else by its ``__<index>`` suffix when every input has one, else configuration order."""
    if all(name in arguments for name in names):
        return {name: list(arguments).index(name) for name in names}
    return _by_suffix_or_order(names)


def output_positions(names: Sequence[str]) -> dict[str, int]:
    """Result position of each configured output: its ``__<index>`` suffix when every output
    has one, else configuration order."""
    return _by_suffix_or_order(names)


def _by_suffix_or_order(names: Sequence[str]) -> dict[str, int]:
    matches = [_INDEXED.search(name) for name in names]
    if all(matches):
        return {name: int(m.group(1)) for name, m in zip(names, matches, strict=True)}  # type: ignore[union-attr]
    return {name: index for index, name in enumerate(names)}


def _flatten(result: Any) -> list[Any]:
    """forward()'s result as a list of outputs: a tensor or a List[str] is one output; a
    tuple or a list of tensors is one output per element."""
    if isinstance(result, tuple):
        return list(result)
    if isinstance(result, list) and result and not all(isinstance(v, str) for v in result):
        return list(result)
    return [result]


def _fixed(dims: tuple[int, ...], count: int) -> tuple[int, ...]:
    if dims and all(d > 0 for d in dims) and int(np.prod(dims)) == count:
        return dims
    return (count,)


def _int_parameter(config: ModelConfig, key: str) -> int:
    value = config.parameters.get(key, "").strip()
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"model '{config.name}': parameter {key} must be an integer, got '{value}'"
        ) from None


def _bool_parameter(config: ModelConfig, key: str, default: bool) -> bool:
    value = config.parameters.get(key, "").strip().lower()
    if not value:
        return default
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ConfigError(
        f"model '{config.name}': parameter {key} must be true or false, got '{value}'"
    )


# -- `tidal config generate` -----------------------------------------------------------------

# Sizes given to -1 dimensions in the two probing runs: the first dimension and the others
# get different sizes, so a batch dimension can be told apart from other variable ones.
_PROBE_SIZES = ((2, 5), (3, 7))


def complete_by_running(
    config: ModelConfig, version_dir: Path, max_batch_size: int | None = None
) -> ModelConfig:
    """Complete a TorchScript config whose inputs (name, type, full dims with -1 for variable
    ones, batch dimension included) are known, by running the module twice on example data.

    The outputs' types come from what the module returns; a dimension that changes between
    the runs is -1. When every input and output has a leading dimension that follows the
    example batch size, the model batches (``max_batch_size`` or 4, ``dynamic_batching``).
    """
    torch = import_torch(config.name)
    _check_types(replace(config, outputs=()))
    module = load_module(config, version_dir)
    plan = _Plan.build(replace(config, outputs=()), _forward_arguments(config, module))
    runs = []
    for batch, other in _PROBE_SIZES:
        shapes = {t.name: _probe_shape(t.dims, batch, other) for t in config.inputs}
        values = {t.name: _example(torch, t, shapes[t.name]) for t in config.inputs}
        try:
            with torch.inference_mode():
                if plan.dict_input:
                    result = module(values)
                else:
                    args: list[Any] = [None] * plan.argument_count
                    for name, value in values.items():
                        args[plan.inputs[name]] = value
                    result = module(*args)
        except Exception as exc:
            # TorchScript errors carry the script's traceback: its last line says what failed.
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise ConfigError(
                f"model '{config.name}': running the module on example inputs "
                f"{ {k: list(v) for k, v in shapes.items()} } failed: "
                f"{lines[-1] if lines else type(exc).__name__}"
            ) from None
        runs.append((batch, _describe_outputs(config.name, _flatten(result))))
    (batch_a, first), (batch_b, second) = runs
    dims = [
        tuple(-1 if x != y else x for x, y in zip(a[1], b[1], strict=True))
        for a, b in zip(first, second, strict=True)
    ]
    names = _output_names(config, len(first))
    batchable = all(t.dims and t.dims[0] == -1 for t in config.inputs) and all(
        a[1] and b[1] and a[1][0] == batch_a and b[1][0] == batch_b
        for a, b in zip(first, second, strict=True)
    )
    wanted = DEFAULT_MAX_BATCH_SIZE if max_batch_size is None else max_batch_size
    batching = batchable and wanted > 0
    offset = 1 if batching else 0
    outputs = tuple(
        _scalar_per_sample(TensorConfig(name=name, data_type=dtype, dims=shape[offset:]))
        for name, (dtype, _), shape in zip(names, first, dims, strict=True)
    )
    inputs = tuple(_scalar_per_sample(replace(t, dims=t.dims[offset:])) for t in config.inputs)
    return replace(
        config,
        platform="pytorch_libtorch",
        backend="pytorch",
        max_batch_size=wanted if batching else 0,
        inputs=inputs,
        outputs=outputs,
        dynamic_batching=(config.dynamic_batching or DynamicBatching()) if batching else None,
    )


def _scalar_per_sample(tensor: TensorConfig) -> TensorConfig:
    """A tensor that is only the batch dimension: Triton spells it dims [1], reshape []."""
    if tensor.dims:
        return tensor
    return replace(tensor, dims=(1,), reshape=())


def _probe_shape(dims: tuple[int, ...], batch: int, other: int) -> tuple[int, ...]:
    return tuple(d if d > 0 else (batch if index == 0 else other) for index, d in enumerate(dims))


def _example(torch: Any, tensor: TensorConfig, shape: tuple[int, ...]) -> Any:
    if tensor.data_type is DataType.BYTES:
        return ["example"] * int(np.prod(shape))
    dtype = getattr(torch, _TORCH_TYPES[tensor.data_type])  # type: ignore[index]
    # Ones for floating point (safe for division and logarithms), zeros for integers (safe
    # as indices into embeddings and tables).
    if dtype.is_floating_point:
        return torch.ones(shape, dtype=dtype)
    return torch.zeros(shape, dtype=dtype)


def _describe_outputs(model: str, values: list[Any]) -> list[tuple[DataType, tuple[int, ...]]]:
    torch_names = {name: data_type for data_type, name in _TORCH_TYPES.items()}
    described: list[tuple[DataType, tuple[int, ...]]] = []
    for index, value in enumerate(values):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            described.append((DataType.BYTES, (len(value),)))
            continue
        kind = str(getattr(value, "dtype", "")).removeprefix("torch.")
        if kind not in torch_names:
            raise ConfigError(
                f"model '{model}': forward() result {index} is {type(value).__name__}"
                f"{' ' + kind if kind else ''}, which has no Triton data type"
            )
        described.append((torch_names[kind], tuple(value.shape)))
    return described


def _output_names(config: ModelConfig, count: int) -> list[str]:
    """The configured output names in result order when they fit, else OUTPUT__<index>."""
    if config.outputs:
        positions = output_positions([t.name for t in config.outputs])
        by_index = {index: name for name, index in positions.items()}
        if sorted(by_index) == list(range(count)):
            return [by_index[index] for index in range(count)]
        raise ConfigError(
            f"model '{config.name}': the configuration lists outputs "
            f"{[t.name for t in config.outputs]} but forward() returns {count} value(s)"
        )
    return [f"OUTPUT__{index}" for index in range(count)]
