"""The ONNX Runtime backend: auto-complete from the graph, check the config, run sessions."""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tidal.backends.tensor_instance import TensorModelInstance
from tidal.config import paths
from tidal.config.model_config import DynamicBatching, ModelConfig, TensorConfig
from tidal.config.pbtxt import ConfigError
from tidal.core.datatypes import DataType

logger = logging.getLogger(__name__)

DEFAULT_MODEL_FILENAME = "model.onnx"
DEFAULT_MAX_BATCH_SIZE = 4  # what Triton sets when auto-complete finds a batchable model

_ORT_TYPES: dict[str, DataType] = {
    "tensor(bool)": DataType.BOOL,
    "tensor(uint8)": DataType.UINT8,
    "tensor(uint16)": DataType.UINT16,
    "tensor(uint32)": DataType.UINT32,
    "tensor(uint64)": DataType.UINT64,
    "tensor(int8)": DataType.INT8,
    "tensor(int16)": DataType.INT16,
    "tensor(int32)": DataType.INT32,
    "tensor(int64)": DataType.INT64,
    "tensor(float16)": DataType.FP16,
    "tensor(bfloat16)": DataType.BF16,
    "tensor(float)": DataType.FP32,
    "tensor(double)": DataType.FP64,
    "tensor(string)": DataType.BYTES,
}

# (name, data type, dims with -1 for every dynamic dimension)
GraphTensor = tuple[str, DataType, tuple[int, ...]]


class OnnxRuntimeBackend:
    """Serves ``model.onnx`` files with ONNX Runtime."""

    name = "onnxruntime"

    def auto_complete(self, config: ModelConfig, version_dir: Path) -> ModelConfig:
        session = _open_session(config, version_dir, threads=1, providers=["CPUExecutionProvider"])
        inputs, outputs = _graph_io(session)
        return complete_from_graph(config, inputs, outputs)

    def create_instance(
        self, config: ModelConfig, version_dir: Path, device: str, version: int
    ) -> OnnxRuntimeInstance:
        providers = _providers_for(config, device)
        threads = _intra_op_threads(config)
        session = _open_session(config, version_dir, threads=threads, providers=providers)
        check_against_graph(config, *_graph_io(session))
        return OnnxRuntimeInstance(config, version, session)


class OnnxRuntimeInstance(TensorModelInstance):
    """One ONNX Runtime session. ``session.run`` releases the GIL, so instances run in
    threads concurrently."""

    def __init__(self, config: ModelConfig, version: int, session: ort.InferenceSession) -> None:
        super().__init__(config, version)
        self._session = session
        self._string_inputs = {t.name for t in config.inputs if t.data_type is DataType.BYTES}
        self._bf16_inputs = {t.name for t in config.inputs if t.data_type is DataType.BF16}
        self._bf16_outputs = {t.name for t in config.outputs if t.data_type is DataType.BF16}

    def run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        for name in self._string_inputs & feeds.keys():
            # ORT string tensors take str elements; the protocol carries bytes.
            feeds[name] = _decode_strings(feeds[name])
        for name in self._bf16_inputs & feeds.keys():
            feeds[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                np.ascontiguousarray(feeds[name]),
                16,  # onnx.TensorProto.BFLOAT16
            )
        if not self._bf16_outputs.intersection(output_names):
            return self._session.run(output_names, feeds)
        # numpy has no bfloat16: run with OrtValues and copy those outputs' raw bits out.
        values = self._session.run_with_ort_values(
            output_names,
            {
                name: v if isinstance(v, ort.OrtValue) else ort.OrtValue.ortvalue_from_numpy(v)
                for name, v in feeds.items()
            },
        )
        return [
            _bf16_bits(v) if name in self._bf16_outputs else v.numpy()
            for name, v in zip(output_names, values, strict=True)
        ]

    def close(self) -> None:
        self._session = None


def complete_from_graph(
    config: ModelConfig, inputs: list[GraphTensor], outputs: list[GraphTensor]
) -> ModelConfig:
    """Fill platform, batching, inputs and outputs from the graph; never contradict the user."""
    config = replace(
        config,
        platform=config.platform or "onnxruntime_onnx",
        backend=config.backend or "onnxruntime",
        default_model_filename=config.default_model_filename or DEFAULT_MODEL_FILENAME,
    )
    if config.max_batch_size == 0 and _can_batch(config, inputs, outputs):
        config = replace(
            config,
            max_batch_size=DEFAULT_MAX_BATCH_SIZE,
            dynamic_batching=config.dynamic_batching or DynamicBatching(),
        )
    offset = 1 if config.batching else 0
    return replace(
        config,
        inputs=_complete_tensors(config, "input", config.inputs, inputs, offset),
        outputs=_complete_tensors(config, "output", config.outputs, outputs, offset),
    )


def check_against_graph(
    config: ModelConfig, inputs: list[GraphTensor], outputs: list[GraphTensor]
) -> None:
    """Raise ``ConfigError`` where the configuration contradicts the ONNX graph."""
    graph_inputs = {name: (dtype, dims) for name, dtype, dims in inputs}
    graph_outputs = {name: (dtype, dims) for name, dtype, dims in outputs}
    for kind, tensors, graph in (
        ("input", config.inputs, graph_inputs),
        ("output", config.outputs, graph_outputs),
    ):
        for tensor in tensors:
            if tensor.name not in graph:
                raise ConfigError(
                    f"model '{config.name}': {kind} '{tensor.name}' is not in the ONNX model "
                    f"(the model's {kind}s: {', '.join(graph)})"
                )
            _check_tensor(config, kind, tensor, *graph[tensor.name])
    configured = {t.name for t in config.inputs}
    missing = [name for name in graph_inputs if name not in configured]
    if missing:
        raise ConfigError(
            f"model '{config.name}': the ONNX model's input(s) {missing} are missing from the "
            "configuration"
        )


def _check_tensor(
    config: ModelConfig, kind: str, tensor: TensorConfig, dtype: DataType, dims: tuple[int, ...]
) -> None:
    where = f"model '{config.name}': {kind} '{tensor.name}'"
    if tensor.data_type is not dtype:
        configured = tensor.data_type.config_name if tensor.data_type else "TYPE_INVALID"
        raise ConfigError(
            f"{where} has data_type {configured} in the configuration but the model has "
            f"{dtype.config_name}"
        )
    shape = tensor.reshape if tensor.reshape is not None else tensor.dims
    if config.batching:
        if not dims or dims[0] != -1:
            raise ConfigError(
                f"{where}: max_batch_size is {config.max_batch_size} but the model's first "
                f"dimension is {list(dims[:1])}, not a dynamic batch dimension"
            )
        dims = dims[1:]
    if len(shape) != len(dims) or any(
        want > 0 and have > 0 and want != have for want, have in zip(shape, dims, strict=False)
    ):
        field = "reshape" if tensor.reshape is not None else "dims"
        raise ConfigError(
            f"{where} has {field} {list(shape)} in the configuration but the model has "
            f"{list(dims)}" + (" after the batch dimension" if config.batching else "")
        )


def _can_batch(config: ModelConfig, inputs: list[GraphTensor], outputs: list[GraphTensor]) -> bool:
    every = inputs + outputs
    if not every or any(not dims or dims[0] != -1 for _, _, dims in every):
        return False
    # A user who wrote full-rank dims described an unbatched model.
    ranks = {name: len(dims) for name, _, dims in every}
    return not any(
        t.dims and len(t.dims) == ranks.get(t.name) for t in config.inputs + config.outputs
    )


def _complete_tensors(
    config: ModelConfig,
    kind: str,
    configured: tuple[TensorConfig, ...],
    graph: list[GraphTensor],
    offset: int,
) -> tuple[TensorConfig, ...]:
    by_name = {name: (dtype, dims[offset:]) for name, dtype, dims in graph}
    completed = []
    for tensor in configured:
        if tensor.name not in by_name:
            completed.append(tensor)  # check_against_graph reports it
            continue
        dtype, dims = by_name[tensor.name]
        if tensor.data_type is not None and tensor.data_type is not dtype:
            raise ConfigError(
                f"model '{config.name}': {kind} '{tensor.name}' has data_type "
                f"{tensor.data_type.config_name} in the configuration but the model has "
                f"{dtype.config_name}"
            )
        if tensor.dims or tensor.reshape is not None:
            completed.append(replace(tensor, data_type=tensor.data_type or dtype))
        else:
            dims, reshape = _config_dims(dims, offset)
            completed.append(
                replace(tensor, data_type=tensor.data_type or dtype, dims=dims, reshape=reshape)
            )
    # The model needs every input, so missing ones are added; a list of outputs the user
    # wrote is a deliberate subset, so outputs are added only when none are listed.
    if kind == "input" or not configured:
        listed = {t.name for t in configured}
        completed.extend(
            TensorConfig(name, dtype, *_config_dims(dims, offset))
            for name, (dtype, dims) in by_name.items()
            if name not in listed
        )
    return tuple(completed)


def _config_dims(
    dims: tuple[int, ...], offset: int
) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """``dims`` and ``reshape`` for a graph tensor whose dims past the batch are ``dims``. As
    Triton's ONNX Runtime backend completes it, a ``[-1]`` tensor of a batching model (no
    dims left past the batch) is dims ``[1]`` reshaped to ``[]``: requests send ``[N, 1]``
    and the model sees ``[N]``. (A scalar of an unbatched model keeps ``[]``.)"""
    if dims or not offset:
        return dims, None
    return (1,), ()


def _graph_io(session: ort.InferenceSession) -> tuple[list[GraphTensor], list[GraphTensor]]:
    return _describe(session.get_inputs()), _describe(session.get_outputs())


def _describe(args: list[ort.NodeArg]) -> list[GraphTensor]:
    described = []
    for arg in args:
        if arg.type not in _ORT_TYPES:
            raise ConfigError(f"ONNX tensor '{arg.name}' has unsupported type {arg.type}")
        dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or ()))
        described.append((arg.name, _ORT_TYPES[arg.type], dims))
    return described


def model_file(config: ModelConfig, version_dir: Path) -> Path:
    """The ONNX file of a version: ``model.onnx`` (or the configured name), which may also be
    a folder holding ``model.onnx`` next to its external data."""
    return paths.model_file(
        config, version_dir, DEFAULT_MODEL_FILENAME, inner=DEFAULT_MODEL_FILENAME
    )


def _open_session(
    config: ModelConfig, version_dir: Path, *, threads: int, providers: list[str]
) -> ort.InferenceSession:
    path = model_file(config, version_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = _int_parameter(config, "inter_op_thread_count", 1)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises several of its own exception types here
        # ORT's messages name the file by its absolute path: clients see it from the repository.
        shown = paths.scrub_paths(str(exc), version_dir.parent.parent)
        raise ConfigError(
            f"model '{config.name}': ONNX Runtime cannot load "
            f"'{paths.scrub_paths(str(path), version_dir.parent.parent)}': {shown}"
        ) from None


def _intra_op_threads(config: ModelConfig) -> int:
    configured = _int_parameter(config, "intra_op_thread_count", 0)
    if configured > 0:
        return configured
    # Share the cores this process may use among the instances, so they don't oversubscribe.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // config.instance_count)


def _int_parameter(config: ModelConfig, key: str, default: int) -> int:
    value = config.parameters.get(key, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"model '{config.name}': parameter {key} must be an integer, got '{value}'"
        ) from None


def _providers_for(config: ModelConfig, device: str) -> list[str]:
    if not device.startswith("gpu"):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ConfigError(
            f"model '{config.name}': instance_group kind KIND_GPU needs the CUDA execution "
            "provider (install onnxruntime-gpu on a machine with an NVIDIA GPU)"
        )
    gpu = int(device.partition(":")[2] or 0)
    return [("CUDAExecutionProvider", {"device_id": gpu}), "CPUExecutionProvider"]  # type: ignore[list-item]


def _bf16_bits(value: ort.OrtValue) -> np.ndarray:
    """A copy of a bfloat16 OrtValue's raw bits as a ``uint16`` array."""
    shape = tuple(value.shape())
    count = int(np.prod(shape))
    buffer = (ctypes.c_uint16 * count).from_address(value.data_ptr())
    return np.ctypeslib.as_array(buffer).copy().reshape(shape)


def _decode_strings(array: np.ndarray) -> np.ndarray:
    flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array.ravel()]
    return np.array(flat, dtype=object).reshape(array.shape)
