"""TorchScript models (``platform: "pytorch_libtorch"``) through a real server and the real
``tritonclient``: Triton's input/output naming, batching, strings, errors, broken models."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from .conftest import (
    TidalServer,
    error_message,
    http_client,
    infer_input,
    running_server,
    triton_client,
)
from .models import model_config, tensor_config, write_text

torch = pytest.importorskip("torch")


# --------------------------------------------------------------------------- the modules


class AddSub(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a - b


class Difference(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x - y


class DictProduct(torch.nn.Module):
    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return inputs["alpha"] * inputs["beta"]


class Upper(torch.nn.Module):
    def forward(self, words: list[str]) -> list[str]:
        return [word.upper() for word in words]


class RaisesOnNegative(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() < 0):
            raise ValueError("negative input")
        return x * 2


class Doubles(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class ToDouble(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def save_module(path: Path, module: torch.nn.Module) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in 2.10+
        torch.jit.save(torch.jit.script(module), str(path))


def ts_model(
    repo: Path,
    name: str,
    module: torch.nn.Module,
    inputs: list[str],
    outputs: list[str],
    max_batch_size: int = 0,
    extra: str = "",
    platform: str = "pytorch_libtorch",
) -> None:
    save_module(repo / name / "1" / "model.pt", module)
    text = model_config(name, inputs, outputs, max_batch_size, extra, platform=platform)
    if not platform:  # name the backend instead of the platform, as newer configs do
        text = text.replace('platform: ""', 'backend: "pytorch"')
    write_text(repo / name / "config.pbtxt", text)


def fp32(name: str, dims: list[int]) -> str:
    return tensor_config(name, "TYPE_FP32", dims)


def build_torchscript_repository(repo: Path) -> Path:
    # Outputs listed in reverse: OUTPUT__<n> binds by index, not by position in the config.
    ts_model(
        repo,
        "ts_add_sub",
        AddSub(),
        [fp32("INPUT__0", [4]), fp32("INPUT__1", [4])],
        [fp32("OUTPUT__1", [4]), fp32("OUTPUT__0", [4])],
        max_batch_size=8,
        extra="dynamic_batching { max_queue_delay_microseconds: 200000 }",
    )
    # Inputs named after forward()'s arguments bind by name, whatever their order.
    ts_model(
        repo,
        "ts_named",
        Difference(),
        [fp32("y", [3]), fp32("x", [3])],
        [fp32("diff", [3])],
        max_batch_size=4,
        platform="",
    )
    ts_model(
        repo,
        "ts_dict",
        DictProduct(),
        [tensor_config("alpha", "TYPE_INT64", [2]), tensor_config("beta", "TYPE_INT64", [2])],
        [tensor_config("product", "TYPE_INT64", [2])],
        max_batch_size=4,
    )
    ts_model(
        repo,
        "ts_strings",
        Upper(),
        [tensor_config("WORDS__0", "TYPE_STRING", [-1])],
        [tensor_config("UPPER__0", "TYPE_STRING", [-1])],
    )
    ts_model(
        repo,
        "ts_raises",
        RaisesOnNegative(),
        [fp32("INPUT__0", [2])],
        [fp32("OUTPUT__0", [2])],
        max_batch_size=4,
    )
    ts_model(
        repo,
        "ts_fp16",
        Doubles(),
        [tensor_config("INPUT__0", "TYPE_FP16", [2, 2])],
        [tensor_config("OUTPUT__0", "TYPE_FP16", [2, 2])],
    )
    ts_model(
        repo,
        "ts_wrong_dtype",
        ToDouble(),
        [fp32("INPUT__0", [2])],
        [fp32("OUTPUT__0", [2])],
    )
    return repo


@pytest.fixture(scope="module")
def ts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidalServer]:
    repo = build_torchscript_repository(tmp_path_factory.mktemp("torchscript_repo"))
    with running_server(repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(ts_server: TidalServer) -> Iterator[triton_http.InferenceServerClient]:
    with triton_client(ts_server) as triton:
        yield triton


@pytest.fixture(scope="module")
def http(ts_server: TidalServer) -> Iterator[httpx.Client]:
    with http_client(ts_server, connections=8) as session:
        yield session


# --------------------------------------------------------------------------- serving


def test_indexed_names_bind_to_positions(client):
    a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
    b = np.ones((2, 4), np.float32)
    result = client.infer(
        "ts_add_sub", [infer_input("INPUT__0", a, "FP32"), infer_input("INPUT__1", b, "FP32")]
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT__1"), a - b)


def test_metadata_and_config(client):
    metadata = client.get_model_metadata("ts_add_sub")
    assert metadata["platform"] == "pytorch_libtorch"
    assert metadata["inputs"][0] == {"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 4]}
    config = client.get_model_config("ts_named")
    assert (config["platform"], config["backend"]) == ("pytorch_libtorch", "pytorch")


def test_forward_argument_names_bind_by_name(client):
    x = np.array([[10, 20, 30]], np.float32)
    y = np.array([[1, 2, 3]], np.float32)
    # Sent in config order (y first): the server must still pass x as forward()'s x.
    result = client.infer("ts_named", [infer_input("y", y, "FP32"), infer_input("x", x, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("diff"), x - y)


def test_a_dict_argument_receives_every_input_by_name(client):
    alpha = np.array([[2, 3]], np.int64)
    beta = np.array([[5, 7]], np.int64)
    result = client.infer(
        "ts_dict", [infer_input("alpha", alpha, "INT64"), infer_input("beta", beta, "INT64")]
    )
    np.testing.assert_array_equal(result.as_numpy("product"), [[10, 21]])
    assert result.as_numpy("product").dtype == np.int64


def test_strings_travel_as_lists_of_str(client):
    words = np.array([b"tidal", b"torch"], dtype=np.object_)
    result = client.infer("ts_strings", [infer_input("WORDS__0", words, "BYTES")])
    assert result.as_numpy("UPPER__0").tolist() == [b"TIDAL", b"TORCH"]


def test_fp16(client):
    data = np.array([[1.5, -2.0], [0.25, 4.0]], np.float16)
    result = client.infer("ts_fp16", [infer_input("INPUT__0", data, "FP16")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), data * 2)


def test_concurrent_requests_are_batched(http):
    def call(i: int) -> httpx.Response:
        row = [float(i)] * 4
        body = {
            "inputs": [
                {"name": "INPUT__0", "shape": [1, 4], "datatype": "FP32", "data": row},
                {"name": "INPUT__1", "shape": [1, 4], "datatype": "FP32", "data": [1.0] * 4},
            ]
        }
        return http.post("/v2/models/ts_add_sub/infer", json=body)

    before = http.get("/v2/models/ts_add_sub/stats").json()["model_stats"][0]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(call, range(6)))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
        assert outputs == {"OUTPUT__1": [i - 1.0] * 4, "OUTPUT__0": [i + 1.0] * 4}
    after = http.get("/v2/models/ts_add_sub/stats").json()["model_stats"][0]
    assert after["inference_count"] - before["inference_count"] == 6
    assert after["execution_count"] - before["execution_count"] < 6


def test_an_exception_in_forward_fails_the_request_and_the_model_stays_ready(http, client):
    body = {"inputs": [{"name": "INPUT__0", "shape": [1, 2], "datatype": "FP32", "data": [-1, -2]}]}
    message = error_message(http.post("/v2/models/ts_raises/infer", json=body), 500)
    assert "model 'ts_raises' version 1 failed to execute" in message
    assert "negative input" in message
    assert client.is_model_ready("ts_raises")
    good = np.array([[1, 2]], np.float32)
    result = client.infer("ts_raises", [infer_input("INPUT__0", good, "FP32")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT__0"), good * 2)


def test_an_output_of_another_type_than_configured_is_an_error(client):
    with pytest.raises(InferenceServerException) as info:
        client.infer("ts_wrong_dtype", [infer_input("INPUT__0", np.ones(2, np.float32), "FP32")])
    assert (
        "configuration expects datatype TYPE_FP32 for output 'OUTPUT__0', model provides float64"
    ) in str(info.value)


# --------------------------------------------------------------------------- broken models


@pytest.mark.slow
def test_broken_torchscript_models_report_why(tmp_path, start_server):
    save_module(tmp_path / "no_config" / "1" / "model.pt", Doubles())
    ts_model(tmp_path, "too_few_inputs", AddSub(), [fp32("INPUT__0", [4])], [fp32("O__0", [4])])
    write_text(
        tmp_path / "not_torchscript" / "config.pbtxt",
        model_config("not_torchscript", [fp32("INPUT__0", [4])], [fp32("OUTPUT__0", [4])],
                     platform="pytorch_libtorch"),
    )  # fmt: skip
    (tmp_path / "not_torchscript" / "1").mkdir()
    (tmp_path / "not_torchscript" / "1" / "model.pt").write_bytes(b"not a TorchScript archive")
    ts_model(tmp_path, "fine", Doubles(), [fp32("INPUT__0", [2])], [fp32("OUTPUT__0", [2])])
    expected = {
        "no_config": "a TorchScript model needs its inputs in config.pbtxt; `tidal config "
        "generate <model folder> --input NAME:TYPE:DIMS` writes a complete one",
        "too_few_inputs": "model 'too_few_inputs': the configuration has 1 input(s) but "
        "forward() takes 2: a, b",
        "not_torchscript": "model 'not_torchscript': cannot load",
    }
    proc = start_server(tmp_path, flags=["--exit-on-error=false", "--strict-readiness=false"])
    with http_client(proc) as session:
        assert session.get("/v2/models/fine/ready").status_code == 200
        for name, message in expected.items():
            assert session.get(f"/v2/models/{name}/ready").status_code != 200, name
            assert message in session.get(f"/v2/models/{name}").json()["error"], name
