"""Build the three benchmark models as a Triton model repository (fixed seed, byte-identical).

    python bench/models.py [REPOSITORY]      (default: bench/.work/repository)

Models, all FP32, opset 17, IR version 8, first dimension a dynamic batch:

    identity  INPUT0 [-1,16]         -> Identity                                -> OUTPUT0 [-1,16]
    mlp       INPUT0 [-1,784]        -> Gemm 1024, Relu, Gemm 1024, Relu, Gemm 10 -> OUTPUT0 [-1,10]
    cnn       INPUT0 [-1,3,224,224]  -> ResNet-18 shape, BatchNorm folded into the conv biases
                                                                                -> OUTPUT0 [-1,1000]

These are the shapes, FLOP counts and seed of the peers' harness (/work/shared/bench-anchors,
models.py): weights are drawn from ``numpy.random.default_rng(20241124)`` in the same order, so the
tensors are the same. FLOPs per sample count 2 per multiply-add in Conv/Gemm, plus 1 per output
element of bias, Relu, Add and pooling (mlp 3.73 MFLOP, cnn 3.64 GFLOP).

Each model gets ``<name>/1/model.onnx`` and a ``config.pbtxt`` (dynamic batching with no queue
delay, one CPU instance, one intra-op and one inter-op ONNX Runtime thread); ``models.json`` in the
repository root records FLOPs, parameters and sha256. A file whose content hash already matches is
left untouched, so running this twice changes nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20241124
OPSET = 17
IR_VERSION = 8
BENCH = Path(__file__).resolve().parent
DEFAULT_REPOSITORY = BENCH / ".work" / "repository"
MODEL_NAMES = ("identity", "mlp", "cnn")
MAX_BATCH_SIZE = {"identity": 64, "mlp": 64, "cnn": 16}


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_dims: tuple[int, ...]  # without the batch dimension
    output_dims: tuple[int, ...]
    flops_per_sample: int
    params: int
    max_batch_size: int
    sha256: str = ""
    bytes: int = 0


@dataclass(frozen=True)
class BuiltModel:
    info: ModelInfo
    model: onnx.ModelProto


class _Graph:
    """Collects nodes and initializers, numbers tensor names, and counts FLOPs and parameters."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.flops = 0
        self.params = 0
        self._count = 0

    def fresh(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def weight(self, array: np.ndarray, prefix: str) -> str:
        name = self.fresh(prefix)
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        self.params += array.size
        return name

    def add(self, op: str, inputs: list[str], output: str | None = None, **attrs: object) -> str:
        output = output or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def he_normal(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)

    def small_bias(self, size: int) -> np.ndarray:
        return self.rng.standard_normal(size) * 0.01

    def dense(self, x: str, fan_in: int, fan_out: int, output: str | None = None) -> str:
        """Gemm with a [fan_in, fan_out] weight and a bias."""
        weight = self.weight(self.he_normal((fan_in, fan_out), fan_in), "dense_w")
        bias = self.weight(self.small_bias(fan_out), "dense_b")
        self.flops += 2 * fan_in * fan_out + fan_out
        return self.add("Gemm", [x, weight, bias], output)

    def relu(self, x: str, elements: int) -> str:
        self.flops += elements
        return self.add("Relu", [x])

    def conv(
        self, x: str, c_in: int, c_out: int, kernel: int, stride: int, size: int
    ) -> tuple[str, int]:
        """Conv with a bias (BatchNorm folded in), 'same'-style padding; returns (tensor, size)."""
        pad = kernel // 2
        weight = self.weight(
            self.he_normal((c_out, c_in, kernel, kernel), c_in * kernel * kernel), "conv_w"
        )
        bias = self.weight(self.small_bias(c_out), "conv_b")
        out_size = (size + 2 * pad - kernel) // stride + 1
        self.flops += (2 * c_in * kernel * kernel + 1) * c_out * out_size * out_size
        y = self.add(
            "Conv",
            [x, weight, bias],
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad] * 4,
        )
        return y, out_size

    def basic_block(self, x: str, c_in: int, c_out: int, stride: int, size: int) -> tuple[str, int]:
        """ResNet basic block: conv3x3-relu-conv3x3 plus the (1x1 strided) shortcut, then relu."""
        y, out_size = self.conv(x, c_in, c_out, 3, stride, size)
        y = self.relu(y, c_out * out_size * out_size)
        y, _ = self.conv(y, c_out, c_out, 3, 1, out_size)
        shortcut = x
        if stride != 1 or c_in != c_out:
            shortcut, _ = self.conv(x, c_in, c_out, 1, stride, size)
        elements = c_out * out_size * out_size
        self.flops += elements  # the Add
        y = self.add("Add", [y, shortcut])
        return self.relu(y, elements), out_size


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tidal bench"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _io(name: str, dims: tuple[int, ...]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *dims])


def build_identity(rng: np.random.Generator) -> BuiltModel:
    del rng  # no weights
    graph = helper.make_graph(
        [helper.make_node("Identity", ["INPUT0"], ["OUTPUT0"])],
        "identity",
        [_io("INPUT0", (16,))],
        [_io("OUTPUT0", (16,))],
    )
    info = ModelInfo("identity", (16,), (16,), 0, 0, MAX_BATCH_SIZE["identity"])
    return BuiltModel(info, _finish(graph))


def build_mlp(rng: np.random.Generator) -> BuiltModel:
    g = _Graph(rng)
    x = g.relu(g.dense("INPUT0", 784, 1024), 1024)
    x = g.relu(g.dense(x, 1024, 1024), 1024)
    g.dense(x, 1024, 10, output="OUTPUT0")
    graph = helper.make_graph(
        g.nodes, "mlp", [_io("INPUT0", (784,))], [_io("OUTPUT0", (10,))], g.initializers
    )
    info = ModelInfo("mlp", (784,), (10,), g.flops, g.params, MAX_BATCH_SIZE["mlp"])
    return BuiltModel(info, _finish(graph))


def build_cnn(rng: np.random.Generator) -> BuiltModel:
    g = _Graph(rng)
    x, size = g.conv("INPUT0", 3, 64, 7, 2, 224)  # 112x112
    x = g.relu(x, 64 * size * size)
    x = g.add("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    size = (size + 2 - 3) // 2 + 1  # 56x56
    g.flops += 64 * size * size * 9
    channels = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        x, size = g.basic_block(x, channels, width, stride, size)
        x, size = g.basic_block(x, width, width, 1, size)
        channels = width
    x = g.add("GlobalAveragePool", [x])
    g.flops += channels * size * size
    x = g.add("Flatten", [x], axis=1)
    fc_weight = rng.standard_normal((channels, 1000)) * np.sqrt(1.0 / channels)
    weight = g.weight(fc_weight, "fc_w")
    bias = g.weight(np.zeros(1000), "fc_b")
    g.flops += 2 * channels * 1000 + 1000
    g.add("Gemm", [x, weight, bias], "OUTPUT0")
    graph = helper.make_graph(
        g.nodes,
        "cnn_resnet18",
        [_io("INPUT0", (3, 224, 224))],
        [_io("OUTPUT0", (1000,))],
        g.initializers,
    )
    info = ModelInfo("cnn", (3, 224, 224), (1000,), g.flops, g.params, MAX_BATCH_SIZE["cnn"])
    return BuiltModel(info, _finish(graph))


# Built in this order from one generator: the order fixes which random numbers each model gets.
_BUILDERS: tuple[tuple[str, Callable[[np.random.Generator], BuiltModel]], ...] = (
    ("identity", build_identity),
    ("mlp", build_mlp),
    ("cnn", build_cnn),
)


def config_text(info: ModelInfo) -> str:
    """The model's ``config.pbtxt``."""

    def dims(values: tuple[int, ...]) -> str:
        return ", ".join(str(v) for v in values)

    return f"""name: "{info.name}"
backend: "onnxruntime"
max_batch_size: {info.max_batch_size}
input [ {{ name: "INPUT0" data_type: TYPE_FP32 dims: [ {dims(info.input_dims)} ] }} ]
output [ {{ name: "OUTPUT0" data_type: TYPE_FP32 dims: [ {dims(info.output_dims)} ] }} ]
dynamic_batching {{ }}
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "intra_op_thread_count" value: {{ string_value: "1" }} }}
parameters {{ key: "inter_op_thread_count" value: {{ string_value: "1" }} }}
"""


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` unless the file already holds exactly it; True when written."""
    digest = hashlib.sha256(data).hexdigest()
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == digest:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_bytes(data)
    scratch.replace(path)
    return True


def build_repository(
    repository: Path = DEFAULT_REPOSITORY,
    names: tuple[str, ...] = MODEL_NAMES,
    *,
    quiet: bool = False,
) -> dict[str, ModelInfo]:
    """Write the named models into ``repository``; return their descriptions.

    All three are always generated (in a fixed order, from one seed), so a subset gets the
    same weights as the full set."""
    unknown = set(names) - set(MODEL_NAMES)
    if unknown:
        raise ValueError(f"unknown benchmark model(s): {', '.join(sorted(unknown))}")
    rng = np.random.default_rng(SEED)
    infos: dict[str, ModelInfo] = {}
    for name, build in _BUILDERS:
        built = build(rng)
        if name not in names:
            continue
        data = built.model.SerializeToString()
        info = ModelInfo(
            **{**asdict(built.info), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        )
        wrote = _write_if_changed(repository / name / "1" / "model.onnx", data)
        wrote |= _write_if_changed(repository / name / "config.pbtxt", config_text(info).encode())
        infos[name] = info
        if not quiet:
            print(
                f"{name:9} {'written' if wrote else 'up to date':10} {len(data) / 1e6:7.2f} MB  "
                f"params={info.params:,}  FLOP/sample={info.flops_per_sample:,}  "
                f"sha256={info.sha256[:16]}",
                file=sys.stderr,
            )
    manifest = {name: asdict(info) for name, info in infos.items()}
    _write_if_changed(repository / "models.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return infos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", nargs="?", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    args = parser.parse_args()
    build_repository(args.repository, tuple(args.models.split(",")))
    print(args.repository)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
