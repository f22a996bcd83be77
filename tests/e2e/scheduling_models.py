"""Models for the scheduling tests: identities with batching configs, a model that fails on
bad indices, and a slow model whose run time is set by an input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper as oh

from .models import save_model, write_text

# The slow model runs SLOW_ITERATIONS_PER_MS loop steps per requested millisecond (measured
# at about 1.2 us a step on the CI machine); tests only rely on order and coarse ratios.
SLOW_ITERATIONS_PER_MS = 800


def _model(nodes, inputs, outputs, initializers=(), opset=17) -> onnx.ModelProto:
    graph = oh.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def identity_fp32(width: int | str) -> onnx.ModelProto:
    return _model(
        [oh.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        [oh.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["N", width])],
        [oh.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["N", width])],
    )


def gather_fp32() -> onnx.ModelProto:
    """OUTPUT0[n] = DATA[n, INDEX[n]]: an index outside 0..3 makes ONNX Runtime fail."""
    return _model(
        [oh.make_node("GatherElements", ["DATA", "INDEX"], ["OUTPUT0"], axis=1)],
        [
            oh.make_tensor_value_info("DATA", TensorProto.FLOAT, ["N", 4]),
            oh.make_tensor_value_info("INDEX", TensorProto.INT64, ["N", 1]),
        ],
        [oh.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["N", 1])],
    )


def slow_fp32() -> onnx.ModelProto:
    """OUTPUT0 = INPUT0, after max(DELAY) iterations of a small matrix loop."""
    weights = (np.random.default_rng(7).standard_normal((32, 32)) * 0.1).astype(np.float32)
    body = oh.make_graph(
        [
            oh.make_node("Identity", ["cond_in"], ["cond_out"]),
            oh.make_node("MatMul", ["acc_in", "W"], ["product"]),
            oh.make_node("Tanh", ["product"], ["acc_out"]),
        ],
        "body",
        [
            oh.make_tensor_value_info("step", TensorProto.INT64, []),
            oh.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            oh.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1, 32]),
        ],
        [
            oh.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            oh.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1, 32]),
        ],
        [oh.make_tensor("W", TensorProto.FLOAT, [32, 32], weights.ravel())],
    )
    return _model(
        [
            oh.make_node("ReduceMax", ["DELAY"], ["steps"], keepdims=0),
            oh.make_node(
                "Constant", [], ["go"], value=oh.make_tensor("go", TensorProto.BOOL, [], [True])
            ),
            oh.make_node(
                "Constant",
                [],
                ["start"],
                value=oh.make_tensor("s", TensorProto.FLOAT, [1, 32], [1.0] * 32),
            ),
            oh.make_node("Loop", ["steps", "go", "start"], ["acc"], body=body),
            oh.make_node("ReduceSum", ["acc"], ["total"], keepdims=0),
            oh.make_node("Mul", ["total", "zero"], ["nothing"]),
            oh.make_node("Add", ["INPUT0", "nothing"], ["OUTPUT0"]),
        ],
        [
            oh.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["N", 4]),
            oh.make_tensor_value_info("DELAY", TensorProto.INT64, ["N", 1]),
        ],
        [oh.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["N", 4])],
        [oh.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )


def _constant(elem_type: int, dims: list[int], values: list) -> onnx.TensorProto:
    return oh.make_tensor("value", elem_type, dims, values)


def _add(repo: Path, name: str, model: onnx.ModelProto, config: str) -> None:
    save_model(repo / name / "1" / "model.onnx", model)
    write_text(repo / name / "config.pbtxt", f'name: "{name}"\nbackend: "onnxruntime"\n{config}')


def build_scheduling_repository(repo: Path) -> Path:
    """Every model the scheduling tests use; configs leave inputs and outputs to auto-complete."""
    _add(
        repo,
        "batch_delay",
        identity_fp32(4),
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 3000000 "
        "priority_levels: 2 default_priority_level: 1 }\n",
    )
    _add(
        repo,
        "batch_preferred",
        identity_fp32(4),
        "max_batch_size: 8\ndynamic_batching { preferred_batch_size: [ 4 ] "
        "max_queue_delay_microseconds: 5000000 }\n",
    )
    _add(
        repo,
        "batch_shapes",
        identity_fp32("W"),
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 400000 }\n",
    )
    _add(
        repo,
        "batch_errors",
        gather_fp32(),
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 400000 }\n",
    )
    _add(
        repo,
        "queue_limit",
        identity_fp32(4),
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 1500000 "
        "default_queue_policy { max_queue_size: 2 } }\n",
    )
    _add(
        repo,
        "queue_timeout",
        identity_fp32(4),
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 3000000 "
        "default_queue_policy { default_timeout_microseconds: 200000 timeout_action: REJECT } }\n",
    )
    _add(
        repo,
        "queue_timeout_override",
        identity_fp32(4),
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 600000 "
        "default_queue_policy { allow_timeout_override: true } }\n",
    )
    _add(
        repo,
        "queue_timeout_delay",
        identity_fp32(4),
        "max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 600000 "
        "default_queue_policy { default_timeout_microseconds: 100000 timeout_action: DELAY } }\n",
    )
    _add(repo, "slow_one", slow_fp32(), "max_batch_size: 8\n")
    _add(
        repo,
        "slow_two",
        slow_fp32(),
        "max_batch_size: 8\ninstance_group [ { count: 2, kind: KIND_CPU } ]\n",
    )
    _add(repo, "slow_batched", slow_fp32(), "max_batch_size: 1\ndynamic_batching { }\n")
    return repo
