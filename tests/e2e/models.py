"""Builders for the small ONNX models and Triton-layout repositories used by the e2e tests.

Every model is made with ``onnx.helper`` (opset 17, IR version 8) and written next to a
hand-written ``config.pbtxt`` where the test needs one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17
IR_VERSION = 8

# KServe datatype -> (ONNX element type, Triton config type, numpy dtype or None)
DATATYPES: dict[str, tuple[int, str, type | None]] = {
    "BOOL": (TensorProto.BOOL, "TYPE_BOOL", np.bool_),
    "UINT8": (TensorProto.UINT8, "TYPE_UINT8", np.uint8),
    "UINT16": (TensorProto.UINT16, "TYPE_UINT16", np.uint16),
    "UINT32": (TensorProto.UINT32, "TYPE_UINT32", np.uint32),
    "UINT64": (TensorProto.UINT64, "TYPE_UINT64", np.uint64),
    "INT8": (TensorProto.INT8, "TYPE_INT8", np.int8),
    "INT16": (TensorProto.INT16, "TYPE_INT16", np.int16),
    "INT32": (TensorProto.INT32, "TYPE_INT32", np.int32),
    "INT64": (TensorProto.INT64, "TYPE_INT64", np.int64),
    "FP16": (TensorProto.FLOAT16, "TYPE_FP16", np.float16),
    "FP32": (TensorProto.FLOAT, "TYPE_FP32", np.float32),
    "FP64": (TensorProto.DOUBLE, "TYPE_FP64", np.float64),
    "BYTES": (TensorProto.STRING, "TYPE_STRING", np.object_),
    "BF16": (TensorProto.BFLOAT16, "TYPE_BF16", None),
}

# Datatypes that have an identity model in the main repository.
IDENTITY_DATATYPES = list(DATATYPES)

CLASSIFIER_LABELS = [
    "cat",
    "dog",
    "bird",
    "fish",
    "horse",
    "frog",
    "deer",
    "ship",
    "truck",
    "plane",
]

ADD_SUB_WIDTH = 16
ADD_SUB_MAX_BATCH = 8
IDENTITY_MAX_BATCH = 8


# --------------------------------------------------------------------------- low-level helpers


def _value_info(name: str, elem_type: int, shape: Sequence[int | str | None]):
    return helper.make_tensor_value_info(name, elem_type, list(shape))


def make_model(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "tidal_e2e", list(inputs), list(outputs))
    graph.initializer.extend(initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="tidal-e2e",
    )
    onnx.checker.check_model(model)
    return model


def save_model(path: Path, model: onnx.ModelProto) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _dims(dims: Sequence[int]) -> str:
    return "[ " + ", ".join(str(d) for d in dims) + " ]"


def tensor_config(name: str, config_type: str, dims: Sequence[int], extra: str = "") -> str:
    body = f'    name: "{name}"\n    data_type: {config_type}\n    dims: {_dims(dims)}\n'
    if extra:
        body += f"    {extra}\n"
    return "  {\n" + body + "  }"


def model_config(
    name: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    max_batch_size: int = 0,
    extra: str = "",
    platform: str = "onnxruntime_onnx",
) -> str:
    text = f'name: "{name}"\nplatform: "{platform}"\nmax_batch_size: {max_batch_size}\n'
    text += "input [\n" + ",\n".join(inputs) + "\n]\n"
    text += "output [\n" + ",\n".join(outputs) + "\n]\n"
    if extra:
        text += extra.rstrip("\n") + "\n"
    return text


# --------------------------------------------------------------------------- model graphs


def add_sub_onnx(datatype: str) -> onnx.ModelProto:
    """OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, all [batch, 16]."""
    elem = DATATYPES[datatype][0]
    shape = ["batch", ADD_SUB_WIDTH]
    return make_model(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        [_value_info("INPUT0", elem, shape), _value_info("INPUT1", elem, shape)],
        [_value_info("OUTPUT0", elem, shape), _value_info("OUTPUT1", elem, shape)],
    )


def identity_onnx(elem_type: int, shape: Sequence[int | str], in_name="INPUT0", out_name="OUTPUT0"):
    return make_model(
        [helper.make_node("Identity", [in_name], [out_name])],
        [_value_info(in_name, elem_type, shape)],
        [_value_info(out_name, elem_type, shape)],
    )


def add_constant_onnx(constant: int, width: int = 4) -> onnx.ModelProto:
    """INT32 OUTPUT0 = INPUT0 + constant, shape [batch, width]; used to tell versions apart."""
    shape = ["batch", width]
    const = helper.make_tensor("C", TensorProto.INT32, [1], [constant])
    return make_model(
        [helper.make_node("Add", ["INPUT0", "C"], ["OUTPUT0"])],
        [_value_info("INPUT0", TensorProto.INT32, shape)],
        [_value_info("OUTPUT0", TensorProto.INT32, shape)],
        [const],
    )


def scale_onnx(shape: Sequence[int | str], factor: float, in_name="X", out_name="Y"):
    """FP32 out = in * factor."""
    const = helper.make_tensor("F", TensorProto.FLOAT, [1], [factor])
    return make_model(
        [helper.make_node("Mul", [in_name, "F"], [out_name])],
        [_value_info(in_name, TensorProto.FLOAT, shape)],
        [_value_info(out_name, TensorProto.FLOAT, shape)],
        [const],
    )


def reshape_onnx() -> onnx.ModelProto:
    """OUTPUT = Reshape(DATA, SHAPE): a SHAPE that does not fit DATA makes ORT fail at run time."""
    return make_model(
        [helper.make_node("Reshape", ["DATA", "SHAPE"], ["OUTPUT"])],
        [
            _value_info("DATA", TensorProto.FLOAT, ["n"]),
            _value_info("SHAPE", TensorProto.INT64, [2]),
        ],
        [_value_info("OUTPUT", TensorProto.FLOAT, ["a", "b"])],
    )


# --------------------------------------------------------------------------- model folders


def add_sub_model(repo: Path, name: str, datatype: str) -> None:
    config_type = DATATYPES[datatype][1]
    save_model(repo / name / "1" / "model.onnx", add_sub_onnx(datatype))
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config(f"INPUT{i}", config_type, [ADD_SUB_WIDTH]) for i in range(2)],
            [tensor_config(f"OUTPUT{i}", config_type, [ADD_SUB_WIDTH]) for i in range(2)],
            max_batch_size=ADD_SUB_MAX_BATCH,
        ),
    )


def identity_model_name(datatype: str) -> str:
    return f"identity_{datatype.lower()}"


def identity_model(repo: Path, datatype: str) -> None:
    elem, config_type, _ = DATATYPES[datatype]
    name = identity_model_name(datatype)
    save_model(repo / name / "1" / "model.onnx", identity_onnx(elem, ["batch", "n"]))
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("INPUT0", config_type, [-1])],
            [tensor_config("OUTPUT0", config_type, [-1])],
            max_batch_size=IDENTITY_MAX_BATCH,
        ),
    )


def classifier_model(repo: Path, name: str = "classifier") -> None:
    """FP32 [batch, 10] identity whose output has a label file."""
    save_model(
        repo / name / "1" / "model.onnx",
        identity_onnx(TensorProto.FLOAT, ["batch", 10], "LOGITS", "PROBS"),
    )
    write_text(repo / name / "labels.txt", "\n".join(CLASSIFIER_LABELS) + "\n")
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("LOGITS", "TYPE_FP32", [10])],
            [tensor_config("PROBS", "TYPE_FP32", [10], 'label_filename: "labels.txt"')],
            max_batch_size=4,
        ),
    )


def versioned_model(
    repo: Path,
    name: str,
    versions: Sequence[int],
    policy: str | None,
    extra_folders: dict[str, int] | None = None,
) -> None:
    """Version ``n`` adds ``n`` to its INT32 input; ``extra_folders`` maps folder -> constant."""
    for version in versions:
        save_model(repo / name / str(version) / "model.onnx", add_constant_onnx(version))
    for folder, constant in (extra_folders or {}).items():
        save_model(repo / name / folder / "model.onnx", add_constant_onnx(constant))
    extra = f"version_policy: {policy}" if policy else ""
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("INPUT0", "TYPE_INT32", [4])],
            [tensor_config("OUTPUT0", "TYPE_INT32", [4])],
            max_batch_size=8,
            extra=extra,
        ),
    )


def reshape_model(repo: Path, name: str = "reshape_fail") -> None:
    save_model(repo / name / "1" / "model.onnx", reshape_onnx())
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [
                tensor_config("DATA", "TYPE_FP32", [-1]),
                tensor_config("SHAPE", "TYPE_INT64", [2]),
            ],
            [tensor_config("OUTPUT", "TYPE_FP32", [-1, -1])],
            max_batch_size=0,
        ),
    )


def nobatch_model(repo: Path, name: str = "nobatch") -> None:
    """max_batch_size 0: FP32 OUTPUT0 = INPUT0 * 2 with fixed shape [2, 3]."""
    save_model(repo / name / "1" / "model.onnx", scale_onnx([2, 3], 2.0, "INPUT0", "OUTPUT0"))
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("INPUT0", "TYPE_FP32", [2, 3])],
            [tensor_config("OUTPUT0", "TYPE_FP32", [2, 3])],
            max_batch_size=0,
        ),
    )


def autocomplete_batch_model(repo: Path, name: str = "autocomplete_batch") -> None:
    """No config.pbtxt; every input/output has a dynamic first dimension."""
    save_model(repo / name / "1" / "model.onnx", scale_onnx(["N", 4], 3.0))


def autocomplete_fixed_model(repo: Path, name: str = "autocomplete_fixed") -> None:
    """No config.pbtxt; fixed shapes, so auto-complete must not make it a batching model."""
    save_model(repo / name / "1" / "model.onnx", scale_onnx([2, 3], -1.0))


def nested_file_model(repo: Path, name: str = "nested_file") -> None:
    """Model file at ``1/model.onnx/model.onnx``."""
    save_model(repo / name / "1" / "model.onnx" / "model.onnx", add_constant_onnx(10))
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("INPUT0", "TYPE_INT32", [4])],
            [tensor_config("OUTPUT0", "TYPE_INT32", [4])],
            max_batch_size=8,
        ),
    )


def custom_filename_model(repo: Path, name: str = "custom_filename") -> None:
    """``default_model_filename`` names the file; there is no model.onnx."""
    save_model(repo / name / "1" / "weights.onnx", add_constant_onnx(20))
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("INPUT0", "TYPE_INT32", [4])],
            [tensor_config("OUTPUT0", "TYPE_INT32", [4])],
            max_batch_size=8,
            extra='default_model_filename: "weights.onnx"',
        ),
    )


def mismatched_dtype_model(repo: Path, name: str = "bad_dtype") -> None:
    """Config says FP32 for an input that the ONNX graph declares INT32."""
    save_model(
        repo / name / "1" / "model.onnx",
        identity_onnx(TensorProto.INT32, ["batch", 4], "mismatched_input", "out"),
    )
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("mismatched_input", "TYPE_FP32", [4])],
            [tensor_config("out", "TYPE_INT32", [4])],
            max_batch_size=8,
        ),
    )


def mismatched_dims_model(repo: Path, name: str = "bad_dims") -> None:
    """Config says dims [5] for an input the ONNX graph declares [batch, 4]."""
    save_model(
        repo / name / "1" / "model.onnx",
        identity_onnx(TensorProto.FLOAT, ["batch", 4], "wrong_dims_input", "out"),
    )
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("wrong_dims_input", "TYPE_FP32", [5])],
            [tensor_config("out", "TYPE_FP32", [4])],
            max_batch_size=8,
        ),
    )


def garbage_model(repo: Path, name: str = "garbage") -> None:
    """A config.pbtxt next to a model.onnx that is not an ONNX file at all."""
    write_text(repo / name / "1" / "model.onnx", "this is not an onnx model\n")
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("INPUT0", "TYPE_FP32", [4])],
            [tensor_config("OUTPUT0", "TYPE_FP32", [4])],
            max_batch_size=8,
        ),
    )


def dynamic_batching_model(repo: Path, name: str = "dyn_batch") -> None:
    """FP32 Y = X * 0.5, [batch, 4], with an explicit dynamic batcher and two instances."""
    save_model(repo / name / "1" / "model.onnx", scale_onnx(["N", 4], 0.5))
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("X", "TYPE_FP32", [4])],
            [tensor_config("Y", "TYPE_FP32", [4])],
            max_batch_size=8,
            extra="dynamic_batching { max_queue_delay_microseconds: 2000 }\n"
            "instance_group [ { count: 2 kind: KIND_CPU } ]",
        ),
    )


def simple_model(repo: Path, name: str, factor: float = 2.0) -> None:
    """A valid, fully configured FP32 model: Y = X * factor, [batch, 4]."""
    save_model(repo / name / "1" / "model.onnx", scale_onnx(["N", 4], factor))
    write_text(
        repo / name / "config.pbtxt",
        model_config(
            name,
            [tensor_config("X", "TYPE_FP32", [4])],
            [tensor_config("Y", "TYPE_FP32", [4])],
            max_batch_size=4,
        ),
    )


# --------------------------------------------------------------------------- repositories


def build_main_repository(repo: Path) -> Path:
    """The repository the session-wide server serves; every model in it must load."""
    repo.mkdir(parents=True, exist_ok=True)
    add_sub_model(repo, "add_sub_int32", "INT32")
    add_sub_model(repo, "add_sub_fp32", "FP32")
    for datatype in IDENTITY_DATATYPES:
        identity_model(repo, datatype)
    classifier_model(repo)
    reshape_model(repo)
    nobatch_model(repo)
    autocomplete_batch_model(repo)
    dynamic_batching_model(repo)
    autocomplete_fixed_model(repo)
    nested_file_model(repo)
    custom_filename_model(repo)
    # Default policy (latest 1). "03" and "abc" must be ignored; if "03" were read as
    # version 3 it would become the latest.
    versioned_model(repo, "versioned", [1, 2], None, {"03": 3, "abc": 4})
    versioned_model(repo, "versioned_all", [1, 2], "{ all {} }", {"01": 100, "v3": 3})
    versioned_model(repo, "versioned_latest2", [1, 2, 3], "{ latest { num_versions: 2 } }")
    versioned_model(repo, "versioned_specific", [1, 2, 3], "{ specific { versions: [ 1, 3 ] } }")
    return repo
