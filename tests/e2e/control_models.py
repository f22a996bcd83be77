"""Model folders for the model control and lifecycle tests, written the way an operator would
change a live repository: each file lands whole (written aside, then renamed into place)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx

from .models import model_config, scale_onnx, tensor_config
from .scheduling_models import SLOW_ITERATIONS_PER_MS, slow_fp32

SCALE_WIDTH = 4


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``path`` so that a reader sees the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(partial, path)
    return path


def add_version(folder: Path, version: int, model: bytes) -> Path:
    """A whole version folder appearing at once: built aside, then renamed into place."""
    partial = folder / f".{version}.partial"
    partial.mkdir(parents=True)
    (partial / "model.onnx").write_bytes(model)
    target = folder / str(version)
    os.replace(partial, target)
    return target


def scale_config(name: str, max_batch_size: int = 4, extra: str = "") -> str:
    return model_config(
        name,
        [tensor_config("X", "TYPE_FP32", [SCALE_WIDTH])],
        [tensor_config("Y", "TYPE_FP32", [SCALE_WIDTH])],
        max_batch_size=max_batch_size,
        extra=extra,
    )


def scale_bytes(factor: float) -> bytes:
    """An ONNX model: Y = X * factor, FP32 [batch, 4]."""
    return scale_onnx(["N", SCALE_WIDTH], factor).SerializeToString()


def scale_model(
    repo: Path,
    name: str,
    factor: float,
    version: int = 1,
    *,
    config_extra: str = "",
    max_batch_size: int = 4,
) -> Path:
    """A model folder (or one more version of it) computing Y = X * ``factor``."""
    folder = repo / name
    write_atomic(folder / str(version) / "model.onnx", scale_bytes(factor))
    config = scale_config(name, max_batch_size=max_batch_size, extra=config_extra)
    write_atomic(folder / "config.pbtxt", config)
    return folder


def slow_model(repo: Path, name: str, *, config_extra: str = "") -> Path:
    """The scheduling tests' slow identity: its DELAY input sets the run time."""
    folder = repo / name
    write_atomic(folder / "1" / "model.onnx", slow_fp32().SerializeToString())
    write_atomic(
        folder / "config.pbtxt",
        f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 8\n{config_extra}',
    )
    return folder


def slow_body(ms: int, rows: int = 1) -> dict:
    """An infer body for :func:`slow_model` that runs for about ``ms`` milliseconds."""
    return {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [rows, 4],
                "datatype": "FP32",
                "data": [float(i) for i in range(rows * 4)],
            },
            {
                "name": "DELAY",
                "shape": [rows, 1],
                "datatype": "INT64",
                "data": [ms * SLOW_ITERATIONS_PER_MS] * rows,
            },
        ]
    }


def scale_body(values: list[float]) -> dict:
    return {
        "inputs": [{"name": "X", "shape": [1, SCALE_WIDTH], "datatype": "FP32", "data": values}]
    }


def delay_file(ms: int) -> bytes:
    """Raw INT64 bytes for a warmup ``input_data_file`` feeding the slow model's DELAY."""
    return np.array([ms * SLOW_ITERATIONS_PER_MS], np.int64).tobytes()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path)


def onnx_bytes(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString()
