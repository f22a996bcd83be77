"""Tiny ONNX graphs built in memory with ``onnx.helper`` for the backend unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8

Dim = int | str | None


def identity_neg_model(
    shape: Sequence[Dim] = ("batch", 4), elem_type: int = TensorProto.FLOAT
) -> bytes:
    """Input ``x``; outputs ``y = x`` and ``z = -x``, all of ``shape``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["z"])],
        "identity_neg",
        [helper.make_tensor_value_info("x", elem_type, list(shape))],
        [
            helper.make_tensor_value_info("y", elem_type, list(shape)),
            helper.make_tensor_value_info("z", elem_type, list(shape)),
        ],
    )
    return _serialize(graph)


def identity_model(shape: Sequence[Dim], elem_type: int) -> bytes:
    """Input ``x``; output ``y = x``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", elem_type, list(shape))],
        [helper.make_tensor_value_info("y", elem_type, list(shape))],
    )
    return _serialize(graph)


def add_model(shape: Sequence[Dim] = ("batch", 3)) -> bytes:
    """Inputs ``a`` and ``b`` (FP32); output ``sum = a + b``."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "add",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, list(shape)),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, list(shape)),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, list(shape))],
    )
    return _serialize(graph)


def write_model(version_dir: Path, model: bytes, filename: str = "model.onnx") -> Path:
    version_dir.mkdir(parents=True, exist_ok=True)
    path = version_dir / filename
    path.write_bytes(model)
    return path


def write_ident_repository(root: Path, width: int | None = None) -> Path:
    """A repository at ``root`` with model ``ident``: FP32 ``x`` -> ``y``, batched up to 4,
    ``width`` values a row (any number when None)."""
    dims = "-1" if width is None else str(width)
    (root / "ident").mkdir(parents=True)
    (root / "ident" / "config.pbtxt").write_text(
        'name: "ident"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
        f'input [{{ name: "x" data_type: TYPE_FP32 dims: [ {dims} ] }}]\n'
        f'output [{{ name: "y" data_type: TYPE_FP32 dims: [ {dims} ] }}]\n'
    )
    row: Dim = "n" if width is None else width
    write_model(root / "ident" / "1", identity_model(("batch", row), TensorProto.FLOAT))
    return root


def _serialize(graph) -> bytes:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="tidal-unit",
    )
    return model.SerializeToString()
