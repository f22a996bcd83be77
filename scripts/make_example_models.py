"""Generate the built-in example model repository shipped with tidal.

Writes three small, deterministic ONNX models (opset 17, IR version 8) plus their
configuration files into ``src/tidal/examples/model_repository`` (or ``--out DIR``):

* ``densenet_onnx`` - a tiny random-weight image classifier shaped like Triton's example.
* ``simple`` - element-wise sum and difference of two INT32 tensors.
* ``identity_fp32`` - an FP32 identity model with no ``config.pbtxt`` (auto-completed).

Usage: ``python scripts/make_example_models.py [--out DIR]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
SEED = 20240667  # chosen so the top-3 classes for a constant input are well separated
BATCH = "N"
NUM_CLASSES = 1000

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "src/tidal/examples/model_repository"

LABEL_WORDS = (
    "heron", "otter", "maple", "quartz", "falcon", "willow", "badger", "cedar",
    "lynx", "coral", "ember", "fjord", "garnet", "hazel", "ibis", "jasper",
    "kestrel", "lotus", "marten", "nectar", "osprey", "pebble", "quail", "raven",
    "sparrow", "tundra", "umber", "violet", "walrus", "yarrow", "zephyr", "acorn",
    "bison", "canyon", "dune", "egret", "fern", "glacier", "harbor", "iris",
    "juniper", "kelp", "lagoon", "meadow", "newt", "orchid", "puffin", "reef",
    "sable", "thistle", "urchin", "vole", "wren", "yak", "zinnia", "aspen",
    "beetle", "comet", "delta", "elk", "finch", "gecko", "heath", "inlet",
)  # fmt: skip


def _make_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    """Wrap a graph in a model with a fixed opset, IR version and producer."""
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_operatorsetid("", OPSET)],
        producer_name="tidal-make-example-models",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _save(model: onnx.ModelProto, path: Path) -> Path:
    """Serialize a model to ``path``, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString(deterministic=True))
    return path


def _write_text(path: Path, text: str) -> Path:
    """Write a text file with Unix newlines, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def _initializer(name: str, array: np.ndarray) -> onnx.TensorProto:
    """Build an FP32 initializer tensor."""
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name=name)


def build_densenet(rng: np.random.Generator) -> onnx.ModelProto:
    """Build a tiny CNN classifier: data_0 [N,3,224,224] -> fc6_1 [N,1000] (softmax)."""
    w1 = rng.normal(0.0, np.sqrt(2.0 / (3 * 7 * 7)), size=(8, 3, 7, 7))
    b1 = rng.normal(0.0, 0.1, size=(8,)) + 0.1
    w2 = rng.normal(0.0, np.sqrt(2.0 / (8 * 3 * 3)), size=(16, 8, 3, 3))
    b2 = rng.normal(0.0, 0.1, size=(16,)) + 0.1
    w3 = rng.normal(0.0, 1.0, size=(16, NUM_CLASSES))
    b3 = rng.normal(0.0, 0.5, size=(NUM_CLASSES,))
    inits = [
        _initializer("conv1_w", w1),
        _initializer("conv1_b", b1),
        _initializer("conv2_w", w2),
        _initializer("conv2_b", b2),
        _initializer("fc_w", w3),
        _initializer("fc_b", b3),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["data_0", "conv1_w", "conv1_b"], ["conv1"],
            kernel_shape=[7, 7], strides=[4, 4], pads=[3, 3, 3, 3],
        ),
        helper.make_node("Relu", ["conv1"], ["relu1"]),
        helper.make_node(
            "Conv", ["relu1", "conv2_w", "conv2_b"], ["conv2"],
            kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
        ),
        helper.make_node("Relu", ["conv2"], ["relu2"]),
        helper.make_node("GlobalAveragePool", ["relu2"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["fc6_1"], axis=1),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "densenet_onnx",
        [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [BATCH, 3, 224, 224])],
        [helper.make_tensor_value_info("fc6_1", TensorProto.FLOAT, [BATCH, NUM_CLASSES])],
        initializer=inits,
    )
    return _make_model(graph)


def build_simple() -> onnx.ModelProto:
    """Build the INT32 add/sub model: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""

    def tensor(name: str) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.INT32, [BATCH, 16])

    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    graph = helper.make_graph(
        nodes,
        "simple",
        [tensor("INPUT0"), tensor("INPUT1")],
        [tensor("OUTPUT0"), tensor("OUTPUT1")],
    )
    return _make_model(graph)


def build_identity_fp32() -> onnx.ModelProto:
    """Build an FP32 identity model: OUTPUT0 = INPUT0, shape [N, 8]."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity_fp32",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, [BATCH, 8])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, [BATCH, 8])],
    )
    return _make_model(graph)


def densenet_labels() -> str:
    """Return 1000 synthetic class labels, one per line, with a trailing newline."""
    words = LABEL_WORDS
    lines = [f"class_{i:03d}_{words[i % len(words)]}" for i in range(NUM_CLASSES)]
    return "\n".join(lines) + "\n"


DENSENET_CONFIG = """\
name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    format: FORMAT_NCHW
    dims: [ 3, 224, 224 ]
  }
]
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
    label_filename: "densenet_labels.txt"
  }
]
instance_group [
  {
    count: 1
    kind: KIND_CPU
  }
]
dynamic_batching { }
"""

SIMPLE_CONFIG = """\
name: "simple"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  {
    name: "INPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "INPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
output [
  {
    name: "OUTPUT0"
    data_type: TYPE_INT32
    dims: [ 16 ]
  },
  {
    name: "OUTPUT1"
    data_type: TYPE_INT32
    dims: [ 16 ]
  }
]
"""


def write_repository(out: Path) -> list[Path]:
    """Write every example model into ``out`` and return the written paths."""
    rng = np.random.default_rng(SEED)
    densenet = out / "densenet_onnx"
    simple = out / "simple"
    identity = out / "identity_fp32"
    return [
        _save(build_densenet(rng), densenet / "1" / "model.onnx"),
        _write_text(densenet / "config.pbtxt", DENSENET_CONFIG),
        _write_text(densenet / "densenet_labels.txt", densenet_labels()),
        _save(build_simple(), simple / "1" / "model.onnx"),
        _write_text(simple / "config.pbtxt", SIMPLE_CONFIG),
        _save(build_identity_fp32(), identity / "1" / "model.onnx"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the repository and print what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output model repository directory (default: {DEFAULT_OUT})",
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    for path in write_repository(out):
        print(f"wrote {path.relative_to(out)} ({path.stat().st_size} bytes)")
    print(f"example model repository: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
