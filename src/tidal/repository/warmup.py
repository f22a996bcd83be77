"""``model_warmup``: sample requests run on every instance before a version is READY.

As in Triton, a sample of ``batch_size`` N is N requests of one item each, executed together
``count`` times (once when ``count`` is 0); a sample with ``batch_size`` 0 is skipped. Inputs
hold zeros, random values, or the raw bytes of a file in the model's ``warmup/`` folder
(BYTES elements as 4-byte little-endian lengths followed by the bytes). Any failure makes the
version UNAVAILABLE with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tidal.backends.base import ModelInstance
from tidal.config.model_config import ModelConfig, ModelWarmup, WarmupInput
from tidal.config.paths import inside_model_dir
from tidal.config.pbtxt import ConfigError
from tidal.core.datatypes import DataType
from tidal.core.errors import InferenceError
from tidal.core.types import InferInput, InferRequest

logger = logging.getLogger(__name__)

WARMUP_FOLDER = "warmup"
WARMUP_WITHIN = f"the model's '{WARMUP_FOLDER}' folder"


def run_warmup(
    config: ModelConfig, version: int, model_dir: Path, instances: Sequence[ModelInstance]
) -> None:
    """Run every warmup sample on every instance; raise ``ConfigError`` with the reason."""
    if not config.model_warmup:
        return
    rng = np.random.default_rng()
    for sample in config.model_warmup:
        if sample.batch_size == 0:
            continue
        batch = build_sample(config, version, sample, model_dir, rng)
        for index, instance in enumerate(instances):
            for _ in range(max(sample.count, 1)):
                _execute(config, version, sample, instance, batch)
            logger.debug(
                "model '%s' version %d: warmup '%s' ran on instance %d",
                config.name,
                version,
                sample.name,
                index,
            )


def build_sample(
    config: ModelConfig,
    version: int,
    sample: ModelWarmup,
    model_dir: Path,
    rng: np.random.Generator,
) -> list[InferRequest]:
    """The ``batch_size`` requests of one warmup sample."""
    where = f"model '{config.name}': model_warmup '{sample.name}'"
    if sample.batch_size < 0:
        raise ConfigError(f"{where}: batch_size must not be negative")
    if config.batching and sample.batch_size > config.max_batch_size:
        raise ConfigError(
            f"{where}: batch_size {sample.batch_size} is larger than max_batch_size "
            f"{config.max_batch_size}"
        )
    if not config.batching and sample.batch_size != 1:
        raise ConfigError(
            f"{where}: batch_size must be 1 for a model without batching "
            f"(max_batch_size 0), got {sample.batch_size}"
        )
    inputs = []
    for spec in sample.inputs:
        declared = config.input(spec.name)
        if declared is None:
            raise ConfigError(f"{where}: '{spec.name}' is not an input of the model")
        if declared.data_type is not None and declared.data_type is not spec.data_type:
            raise ConfigError(
                f"{where}: input '{spec.name}' is {spec.data_type.config_name}, but the model "
                f"expects {declared.data_type.config_name}"
            )
        if any(d < 0 for d in spec.dims):
            raise ConfigError(
                f"{where}: warmup setting expects all variable-size dimensions are specified "
                f"for input '{spec.name}'"
            )
        shape = ((1,) if config.batching else ()) + spec.dims
        inputs.append((spec, shape, _data(where, spec, shape, model_dir, rng)))
    return [
        InferRequest(
            model_name=config.name,
            model_version=version,
            id=f"warmup:{sample.name}",
            inputs=[InferInput(s.name, s.data_type, shape, data) for s, shape, data in inputs],
        )
        for _ in range(sample.batch_size)
    ]


def _data(
    where: str,
    spec: WarmupInput,
    shape: tuple[int, ...],
    model_dir: Path,
    rng: np.random.Generator,
) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64))
    dtype = spec.data_type
    if spec.source == "file":
        return _from_file(where, spec, shape, count, model_dir)
    if dtype is DataType.BYTES:  # Triton sends empty strings for zero and random alike
        return np.full(shape, b"", dtype=object)
    if spec.source == "zero":
        return np.zeros(shape, dtype.numpy_dtype)
    target = dtype.numpy_dtype
    if dtype is DataType.BOOL:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if target.kind == "f" and dtype is not DataType.BF16:
        return rng.random(shape).astype(target)
    # Integers (and BF16's raw bits): any value of the type, as Triton fills random bytes.
    return np.frombuffer(rng.bytes(count * target.itemsize), target).reshape(shape).copy()


def _from_file(
    where: str, spec: WarmupInput, shape: tuple[int, ...], count: int, model_dir: Path
) -> np.ndarray:
    # The loader checked the file against the warmup folder, links followed; this keeps the
    # rule that no absolute path or ".." leaves it.
    try:
        path = inside_model_dir(
            model_dir / WARMUP_FOLDER, spec.file, model="", field="", allow_symlinks_out=True
        )
    except ConfigError:
        raise ConfigError(
            f"{where}: input '{spec.name}': input_data_file '{spec.file}' must name a file "
            f"inside {WARMUP_WITHIN}"
        ) from None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{where}: input '{spec.name}': cannot read input_data_file '{spec.file}': "
            f"{exc.strerror or type(exc).__name__}"
        ) from None
    if spec.data_type is DataType.BYTES:
        items = _split_bytes(raw)
        if items is None or len(items) != count:
            raise ConfigError(
                f"{where}: input '{spec.name}': '{spec.file}' must hold {count} length-prefixed "
                "BYTES elements"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    needed = count * spec.data_type.item_size
    if len(raw) < needed:
        raise ConfigError(
            f"{where}: input '{spec.name}': warmup setting expects {needed} bytes, but the data "
            f"provided from {spec.file} only has {len(raw)} bytes"
        )
    return np.frombuffer(raw[:needed], spec.data_type.numpy_dtype).reshape(shape).copy()


def _split_bytes(raw: bytes) -> list[bytes] | None:
    items, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            return None
        size = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(raw):
            return None
        items.append(raw[offset : offset + size])
        offset += size
    return items


def _execute(
    config: ModelConfig,
    version: int,
    sample: ModelWarmup,
    instance: ModelInstance,
    batch: list[InferRequest],
) -> None:
    try:
        results = instance.execute(batch)
    except Exception as exc:  # a backend that raises instead of returning errors
        results = [InferenceError.internal(str(exc))]
    for result in results:
        if isinstance(result, InferenceError):
            raise ConfigError(
                f"model '{config.name}' version {version}: warmup sample '{sample.name}' "
                f"failed: {result.message}"
            )
