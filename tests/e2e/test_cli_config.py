"""``tidal config generate`` and ``tidal config validate``, run as the real command line."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest

from tidal.config import parse_config_text

from .conftest import run_tidal
from .models import (
    autocomplete_batch_model,
    autocomplete_fixed_model,
    classifier_model,
    garbage_model,
    mismatched_dtype_model,
    model_config,
    simple_model,
    tensor_config,
    write_text,
)

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed"
)


def generate(*args: str):
    return run_tidal("config", "generate", *args, timeout=120)


def validate(*args: str):
    return run_tidal("config", "validate", *args, timeout=120)


def save_script(path: Path, module) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.10+
        torch.jit.save(torch.jit.script(module), str(path))


def tiny_cnn():
    import torch

    class TinyCnn(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.head = torch.nn.Linear(4 * 6 * 6, 10)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            features = torch.relu(self.conv(image)).flatten(1)
            logits = self.head(features)
            return logits, logits.argmax(dim=1)

    return TinyCnn().eval()


def doubler():
    import torch

    class Doubler(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    return Doubler()


# --------------------------------------------------------------------------- generate: ONNX


def test_generate_completes_an_onnx_model_from_its_graph(tmp_path):
    autocomplete_batch_model(tmp_path, "auto")
    result = generate(str(tmp_path / "auto"))
    assert result.returncode == 0, result.stderr
    config = parse_config_text(result.stdout, model_name="auto")
    assert (config.name, config.platform, config.backend) == (
        "auto",
        "onnxruntime_onnx",
        "onnxruntime",
    )
    assert config.max_batch_size == 4
    assert config.dynamic_batching is not None
    assert config.inputs and config.outputs
    assert all(t.data_type is not None and t.dims for t in config.inputs + config.outputs)


def test_generate_can_turn_batching_off(tmp_path):
    autocomplete_batch_model(tmp_path, "auto")
    batched = parse_config_text(generate(str(tmp_path / "auto")).stdout, model_name="auto")
    result = generate(str(tmp_path / "auto" / "1" / "model.onnx"), "--max-batch-size", "0")
    assert result.returncode == 0, result.stderr
    config = parse_config_text(result.stdout, model_name="auto")
    assert config.max_batch_size == 0 and config.dynamic_batching is None
    assert [t.dims for t in config.inputs] == [(-1, *t.dims) for t in batched.inputs]


def test_generate_keeps_an_existing_config(tmp_path):
    classifier_model(tmp_path, "classifier")
    result = generate(str(tmp_path / "classifier"))
    assert result.returncode == 0, result.stderr
    config = parse_config_text(result.stdout, model_name="classifier")
    assert config.max_batch_size == 4
    assert config.outputs[0].label_filename == "labels.txt"


def test_generate_refuses_input_specs_for_onnx(tmp_path):
    autocomplete_fixed_model(tmp_path, "fixed")
    result = generate(str(tmp_path / "fixed"), "--input", "INPUT0:FP32:4")
    assert result.returncode == 1
    assert "--input describes TorchScript inputs" in result.stderr
    assert "Traceback" not in result.stderr


def test_generate_reports_a_missing_path(tmp_path):
    result = generate(str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"tidal config generate: {tmp_path / 'nothing'} does not exist"


# --------------------------------------------------------------------------- generate: TorchScript


@pytest.mark.slow
@needs_torch
def test_generate_a_torchscript_config_and_serve_it(tmp_path, start_server):
    import torch

    module = tiny_cnn()
    save_script(tmp_path / "cnn" / "1" / "model.pt", module)
    result = generate(str(tmp_path / "cnn"), "--input", "INPUT__0:FP32:-1,3,8,8")
    assert result.returncode == 0, result.stderr
    config = parse_config_text(result.stdout, model_name="cnn")
    assert (config.platform, config.backend, config.max_batch_size) == (
        "pytorch_libtorch",
        "pytorch",
        4,
    )
    assert [(t.name, t.data_type.value, t.dims) for t in config.inputs] == [
        ("INPUT__0", "FP32", (3, 8, 8))
    ]
    # The argmax is one number per sample: Triton's dims [1] with reshape [].
    assert [(t.name, t.data_type.value, t.dims, t.reshape) for t in config.outputs] == [
        ("OUTPUT__0", "FP32", (10,), None),
        ("OUTPUT__1", "INT64", (1,), ()),
    ]

    (tmp_path / "cnn" / "config.pbtxt").write_text(result.stdout)
    proc = start_server(tmp_path)
    image = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    body = {
        "inputs": [
            {
                "name": "INPUT__0",
                "shape": [2, 3, 8, 8],
                "datatype": "FP32",
                "data": image.ravel().tolist(),
            }
        ],
    }
    with httpx.Client(base_url=proc.base_url, timeout=30) as session:
        response = session.post("/v2/models/cnn/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    with torch.inference_mode():
        logits, best = module(torch.from_numpy(image))
    received = np.array(outputs["OUTPUT__0"]["data"]).reshape(outputs["OUTPUT__0"]["shape"])
    np.testing.assert_allclose(received, logits.numpy(), rtol=1e-5)
    assert outputs["OUTPUT__1"]["shape"] == [2, 1]
    assert outputs["OUTPUT__1"]["data"] == best.tolist()


@needs_torch
def test_generate_marks_variable_dimensions(tmp_path):
    save_script(tmp_path / "m" / "1" / "model.pt", doubler())
    result = generate(str(tmp_path / "m"), "--input", "FP16:-1,-1,4")
    assert result.returncode == 0, result.stderr
    config = parse_config_text(result.stdout, model_name="m")
    assert config.max_batch_size == 4
    assert [(t.name, t.dims) for t in config.inputs] == [("INPUT__0", (-1, 4))]
    assert [(t.name, t.data_type.value, t.dims) for t in config.outputs] == [
        ("OUTPUT__0", "FP16", (-1, 4))
    ]


@needs_torch
def test_generate_without_batching(tmp_path):
    save_script(tmp_path / "m" / "1" / "model.pt", doubler())
    result = generate(
        str(tmp_path / "m" / "1" / "model.pt"), "--input", "x:INT32:-1,4", "--max-batch-size", "0"
    )
    assert result.returncode == 0, result.stderr
    config = parse_config_text(result.stdout, model_name="m")
    assert config.max_batch_size == 0
    assert [(t.name, t.dims) for t in config.inputs] == [("x", (-1, 4))]
    assert [t.dims for t in config.outputs] == [(-1, 4)]


@needs_torch
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "a TorchScript model's inputs cannot be read from the file"),
        (("--input", "FP32"), "--input 'FP32': expected [NAME:]TYPE:DIMS"),
        (("--input", "x:FLOAT:4"), "--input 'x:FLOAT:4': unknown type 'FLOAT'"),
        (("--input", "x:FP32:4,zero"), "--input 'x:FP32:4,zero': dims must be integers"),
        (("--input", "a:FP32:4", "--input", "b:FP32:4"), "forward() takes 1: x"),
        (("--input", "x:STRING:-1"), "input 'x' is TYPE_STRING but its forward() argument"),
    ],
)
def test_generate_torchscript_errors(tmp_path, args, message):
    save_script(tmp_path / "m" / "1" / "model.pt", doubler())
    result = generate(str(tmp_path / "m"), *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@needs_torch
def test_generate_reports_a_module_that_fails_on_the_examples(tmp_path):
    save_script(tmp_path / "cnn" / "1" / "model.pt", tiny_cnn())
    result = generate(str(tmp_path / "cnn"), "--input", "INPUT__0:FP32:-1,3,5,5")
    assert result.returncode == 1
    assert "model 'cnn': running the module on example inputs {'INPUT__0': [2, 3, 5, 5]}" in (
        result.stderr
    )
    assert "shapes cannot be multiplied" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- validate


def test_validate_a_clean_repository(tmp_path):
    simple_model(tmp_path, "good", 2.0)
    autocomplete_batch_model(tmp_path, "auto")
    result = validate(str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ok", "auto", "onnxruntime_onnx,", "version(s)", "1"]
    assert lines[1].split()[:2] == ["ok", "good"]
    assert lines[-1] == "2 model(s): 2 ok, 0 with problems"


def test_validate_lists_every_problem(tmp_path):
    simple_model(tmp_path, "good", 2.0)
    garbage_model(tmp_path)
    mismatched_dtype_model(tmp_path)
    write_text(tmp_path / "unparsable" / "config.pbtxt", "input [ {")
    classifier_model(tmp_path, "no_labels")
    (tmp_path / "no_labels" / "labels.txt").unlink()
    autocomplete_batch_model(tmp_path, "no_config_off")
    ensemble = model_config(
        "ens",
        [tensor_config("IN", "TYPE_FP32", [4])],
        [tensor_config("OUT", "TYPE_FP32", [4])],
        4,
        'ensemble_scheduling { step [ { model_name: "garbage" input_map { key: "X" value: "IN" }'
        ' output_map { key: "Y" value: "OUT" } } ] }',
        platform="ensemble",
    )
    write_text(tmp_path / "ens" / "config.pbtxt", ensemble)
    (tmp_path / "ens" / "1").mkdir()
    result = validate(str(tmp_path))
    assert result.returncode == 1
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    assert "ok    good" in out
    assert "FAIL  garbage" in out and "ONNX Runtime cannot load" in out
    assert "FAIL  bad_dtype" in out and "data_type TYPE_FP32 in the configuration" in out
    assert "FAIL  unparsable" in out
    assert "FAIL  no_labels" in out and "labels.txt not found" in out
    assert (
        "FAIL  ens" in out
        and "step 0 (model 'garbage'): the model is not available: model 'garbage' has "
        "problems of its own"
        in out
    )
    assert out.splitlines()[-1].startswith("7 model(s): 2 ok, 5 with problems")


def test_validate_without_auto_complete(tmp_path):
    autocomplete_batch_model(tmp_path, "auto")
    result = validate(str(tmp_path), "--disable-auto-complete-config")
    assert result.returncode == 1
    assert "FAIL  auto" in result.stdout
    assert "the configuration has no inputs" in result.stdout


@needs_torch
def test_validate_checks_torchscript_models(tmp_path):
    save_script(tmp_path / "no_config" / "1" / "model.pt", doubler())
    save_script(tmp_path / "fine" / "1" / "model.pt", doubler())
    fine = model_config(
        "fine",
        [tensor_config("INPUT__0", "TYPE_FP32", [4])],
        [tensor_config("OUTPUT__0", "TYPE_FP32", [4])],
        platform="pytorch_libtorch",
    )
    write_text(tmp_path / "fine" / "config.pbtxt", fine)
    result = validate(str(tmp_path))
    assert result.returncode == 1
    assert "ok    fine" in result.stdout
    assert "FAIL  no_config" in result.stdout
    assert "tidal config generate" in result.stdout


def test_validate_a_missing_repository(tmp_path):
    result = validate(str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "is not a directory" in result.stderr
