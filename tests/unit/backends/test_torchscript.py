"""The TorchScript backend in-process: Triton's naming rules, loading checks, execution."""

import json
import subprocess
import sys
import warnings
from dataclasses import replace

import numpy as np
import pytest

from tidal.backends.torchscript import input_positions, output_positions
from tidal.config import ConfigError, ModelConfig, TensorConfig
from tidal.core import DataType, InferenceError, InferInput, InferRequest

# -- naming rules (no torch needed) ----------------------------------------------------------


def test_inputs_named_after_forward_arguments_bind_by_name():
    assert input_positions(["y", "x"], ["x", "y"]) == {"y": 1, "x": 0}


def test_indexed_inputs_bind_by_their_index():
    assert input_positions(["B__1", "A__0"], ["x", "y"]) == {"B__1": 1, "A__0": 0}


def test_other_inputs_bind_in_configuration_order():
    assert input_positions(["second", "INPUT__0"], ["x", "y"]) == {"second": 0, "INPUT__0": 1}


def test_output_positions():
    assert output_positions(["OUTPUT__1", "OUTPUT__0"]) == {"OUTPUT__1": 1, "OUTPUT__0": 0}
    assert output_positions(["logits", "OUTPUT__0"]) == {"logits": 0, "OUTPUT__0": 1}


def test_importing_tidal_never_imports_torch():
    probe = (
        "import json, sys\n"
        "import tidal.backends.registry, tidal.cli.main, tidal.cli.config_cmd\n"
        "import tidal.backends.torchscript, tidal.repository.loader\n"
        "print(json.dumps('torch' in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(result.stdout) is False


def test_a_missing_torch_is_a_config_error(monkeypatch, tmp_path):
    from tidal.backends.torchscript import TorchScriptBackend

    monkeypatch.setitem(sys.modules, "torch", None)  # what an absent package looks like
    config = ModelConfig(
        name="m",
        inputs=(TensorConfig("INPUT__0", DataType.FP32, (2,)),),
        outputs=(TensorConfig("OUTPUT__0", DataType.FP32, (2,)),),
    )
    with pytest.raises(ConfigError) as info:
        TorchScriptBackend().create_instance(config, tmp_path, "cpu", 1)
    assert str(info.value) == (
        "model 'm': TorchScript models need PyTorch; install it with pip install 'tidal[torch]'"
    )


# -- with torch ----------------------------------------------------------------------------------

torch = pytest.importorskip("torch")


class Scale(torch.nn.Module):
    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if bias is None:
            return x * 2
        return x * 2 + bias


class TakesDict(torch.nn.Module):
    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["a"]


class TakesInt(torch.nn.Module):
    def forward(self, x: torch.Tensor, n: int) -> torch.Tensor:
        return x * n


class Pair(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x + 1


def save(version_dir, module):
    version_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.10+
        torch.jit.save(torch.jit.script(module), str(version_dir / "model.pt"))
    return version_dir


def config_of(inputs, outputs, max_batch_size=4, **extra):
    return ModelConfig(
        name="m",
        platform="pytorch_libtorch",
        backend="pytorch",
        max_batch_size=max_batch_size,
        inputs=tuple(TensorConfig(n, t, d) for n, t, d in inputs),
        outputs=tuple(TensorConfig(n, t, d) for n, t, d in outputs),
        **extra,
    )


def instance(tmp_path, module, config):
    from tidal.backends.torchscript import TorchScriptBackend

    return TorchScriptBackend().create_instance(config, save(tmp_path / "1", module), "cpu", 1)


def request(**arrays):
    inputs = [
        InferInput(name, DataType.from_numpy(a.dtype), a.shape, a) for name, a in arrays.items()
    ]
    return InferRequest("m", inputs)


def test_bf16_travels_as_raw_bits(tmp_path):
    config = config_of([("INPUT__0", DataType.BF16, (2,))], [("OUTPUT__0", DataType.BF16, (2,))])
    model = instance(tmp_path, Pair(), config)
    bits = torch.tensor([[1.5, -2.0]], dtype=torch.bfloat16).view(torch.int16).numpy()
    data = bits.view(np.uint16)
    (response,) = model.execute(
        [InferRequest("m", [InferInput("INPUT__0", DataType.BF16, (1, 2), data)])]
    )
    (output,) = response.outputs
    assert output.data.dtype == np.uint16
    np.testing.assert_array_equal(output.data, data)


def test_an_optional_argument_left_out_is_none(tmp_path):
    config = config_of(
        [("x", DataType.FP32, (2,)), ("bias", DataType.FP32, (2,))],
        [("OUTPUT__0", DataType.FP32, (2,))],
    )
    config = replace(config, inputs=(config.inputs[0], replace(config.inputs[1], optional=True)))
    model = instance(tmp_path, Scale(), config)
    x = np.array([[1, 2]], np.float32)
    (alone,) = model.execute([request(x=x)])
    np.testing.assert_array_equal(alone.outputs[0].data, [[2, 4]])
    (biased,) = model.execute([request(x=x, bias=np.ones((1, 2), np.float32))])
    np.testing.assert_array_equal(biased.outputs[0].data, [[3, 5]])


def test_requests_of_a_batch_are_merged_and_split(tmp_path):
    config = config_of([("INPUT__0", DataType.FP32, (2,))], [("OUTPUT__1", DataType.FP32, (2,))])
    model = instance(tmp_path, Pair(), config)
    first = request(INPUT__0=np.array([[1, 2]], np.float32))
    second = request(INPUT__0=np.array([[3, 4], [5, 6]], np.float32))
    a, b = model.execute([first, second])
    np.testing.assert_array_equal(a.outputs[0].data, [[2, 3]])
    np.testing.assert_array_equal(b.outputs[0].data, [[4, 5], [6, 7]])


def test_an_output_index_past_the_result_fails_the_request(tmp_path):
    config = config_of([("INPUT__0", DataType.FP32, (2,))], [("OUTPUT__2", DataType.FP32, (2,))])
    model = instance(tmp_path, Pair(), config)
    (result,) = model.execute([request(INPUT__0=np.ones((1, 2), np.float32))])
    assert isinstance(result, InferenceError)
    assert result.message == (
        "model 'm' version 1 failed to execute: output 'OUTPUT__2' is element 2 of forward()'s "
        "result, but the model returned 2 value(s)"
    )


@pytest.mark.parametrize(
    ("module", "inputs", "message"),
    [
        (
            TakesInt(),
            [("x", DataType.FP32, (2,)), ("n", DataType.INT64, (1,))],
            "forward() argument 'n' has type IntType; only Tensor, List[str], Optional[Tensor] "
            "or a single Dict[str, Tensor] are supported",
        ),
        (
            Pair(),
            [("INPUT__5", DataType.FP32, (2,))],
            "input 'INPUT__5' names argument index 5, but forward() takes 1 argument(s)",
        ),
        (
            Pair(),
            [("x", DataType.UINT32, (2,))],
            "input 'x' has data_type TYPE_UINT32, which the PyTorch backend does not support",
        ),
    ],
)
def test_configurations_that_do_not_fit_the_module(tmp_path, module, inputs, message):
    config = config_of(inputs, [("OUTPUT__0", DataType.FP32, (2,))])
    with pytest.raises(ConfigError) as info:
        instance(tmp_path, module, config)
    assert str(info.value) == f"model 'm': {message}"


def test_a_dict_argument_takes_every_input(tmp_path):
    config = config_of(
        [("a", DataType.INT32, (2,)), ("b", DataType.INT32, (2,))],
        [("OUTPUT__0", DataType.INT32, (2,))],
    )
    model = instance(tmp_path, TakesDict(), config)
    (response,) = model.execute(
        [request(a=np.array([[7, 8]], np.int32), b=np.zeros((1, 2), np.int32))]
    )
    np.testing.assert_array_equal(response.outputs[0].data, [[7, 8]])


def test_thread_and_mode_parameters(tmp_path):
    config = config_of(
        [("INPUT__0", DataType.FP32, (2,))],
        [("OUTPUT__0", DataType.FP32, (2,))],
        parameters={"INFERENCE_MODE": "false", "DISABLE_OPTIMIZED_EXECUTION": "true"},
    )
    model = instance(tmp_path, Pair(), config)
    (response,) = model.execute([request(INPUT__0=np.ones((1, 2), np.float32))])
    np.testing.assert_array_equal(response.outputs[0].data, [[1, 1]])
    bad = replace(config, parameters={"INFERENCE_MODE": "maybe"})
    with pytest.raises(ConfigError, match="parameter INFERENCE_MODE must be true or false"):
        instance(tmp_path, Pair(), bad)


def test_complete_by_running(tmp_path):
    from tidal.backends.torchscript import complete_by_running

    save(tmp_path / "1", Pair())
    config = ModelConfig(name="m", inputs=(TensorConfig("INPUT__0", DataType.FP32, (-1, 3)),))
    completed = complete_by_running(config, tmp_path / "1", max_batch_size=8)
    assert completed.max_batch_size == 8
    assert completed.dynamic_batching is not None
    assert [(t.name, t.dims) for t in completed.inputs] == [("INPUT__0", (3,))]
    assert [(t.name, t.data_type, t.dims) for t in completed.outputs] == [
        ("OUTPUT__0", DataType.FP32, (3,)),
        ("OUTPUT__1", DataType.FP32, (3,)),
    ]
    fixed = ModelConfig(name="m", inputs=(TensorConfig("INPUT__0", DataType.FP32, (2, 3)),))
    unbatched = complete_by_running(fixed, tmp_path / "1")
    assert unbatched.max_batch_size == 0 and unbatched.dynamic_batching is None
    assert [t.dims for t in unbatched.outputs] == [(2, 3), (2, 3)]
