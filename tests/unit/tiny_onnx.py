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


def _serialize(graph) -> bytes:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="tidal-unit",
    )
    return model.SerializeToString()
