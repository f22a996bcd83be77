"""Ensembles through a real server: data flow between steps, batching inside a step, a failing
step, metadata and config, classification, and load-time checks with their messages."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from . import control_models
from .conftest import (
    TidalServer,
    error_message,
    http_client,
    infer_input,
    running_server,
    triton_client,
)
from .models import (
    CLASSIFIER_LABELS,
    _value_info,
    classifier_model,
    make_model,
    model_config,
    save_model,
    tensor_config,
    write_text,
)

# --------------------------------------------------------------------------- the repository


def scale_model(repo: Path, name: str, factor: float, extra: str = "") -> None:
    """FP32 Y = X * factor, [batch, 4], batches of up to 8."""
    control_models.scale_model(repo, name, factor, config_extra=extra, max_batch_size=8)


def gather_model(repo: Path, name: str = "gather") -> None:
    """OUT[b] = DATA[b, IDX[b]]; an index past 3 makes ONNX Runtime fail at run time."""
    graph = make_model(
        [helper.make_node("GatherElements", ["DATA", "IDX"], ["OUT"], axis=1)],
        [
            _value_info("DATA", TensorProto.FLOAT, ["batch", 4]),
            _value_info("IDX", TensorProto.INT64, ["batch", 1]),
        ],
        [_value_info("OUT", TensorProto.FLOAT, ["batch", 1])],
    )
    save_model(repo / name / "1" / "model.onnx", graph)


def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = [f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items()]
    maps += [f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items()]
    return f'{{ model_name: "{model}" model_version: -1 {" ".join(maps)} }}'


def ensemble_model(
    repo: Path,
    name: str,
    inputs: list[str],
    outputs: list[str],
    steps: list[str],
    max_batch_size: int = 4,
) -> None:
    extra = "ensemble_scheduling {\n  step [\n    " + ",\n    ".join(steps) + "\n  ]\n}"
    text = model_config(name, inputs, outputs, max_batch_size, extra, platform="ensemble")
    write_text(repo / name / "config.pbtxt", text)
    (repo / name / "1").mkdir(parents=True, exist_ok=True)  # Triton wants a version folder


def fp32(name: str, dims: list[int], extra: str = "") -> str:
    return tensor_config(name, "TYPE_FP32", dims, extra)


def build_ensemble_repository(repo: Path) -> Path:
    scale_model(repo, "double", 2.0)
    scale_model(repo, "tenfold", 10.0)
    # Only the batching test uses it: its statistics show how its requests were batched.
    scale_model(repo, "batched", 3.0, "dynamic_batching { max_queue_delay_microseconds: 200000 }")
    gather_model(repo)
    classifier_model(repo)
    # IN -> double -> DOUBLED -> tenfold -> OUT: DOUBLED is both an output and a step's input.
    ensemble_model(
        repo,
        "chain",
        [fp32("IN", [4])],
        [fp32("OUT", [4]), fp32("DOUBLED", [4])],
        [
            step("double", {"X": "IN"}, {"Y": "DOUBLED"}),
            step("tenfold", {"X": "DOUBLED"}, {"Y": "OUT"}),
        ],
    )
    # An ensemble whose step is an ensemble; its name sorts first, so it must wait for "chain".
    ensemble_model(
        repo,
        "a_nested",
        [fp32("IN", [4])],
        [fp32("OUT", [4])],
        [step("chain", {"IN": "IN"}, {"OUT": "OUT"})],
    )
    ensemble_model(
        repo,
        "pick",
        [fp32("IN", [4]), tensor_config("IDX", "TYPE_INT64", [1])],
        [fp32("OUT", [1])],
        [
            step("double", {"X": "IN"}, {"Y": "doubled"}),
            step("gather", {"DATA": "doubled", "IDX": "IDX"}, {"OUT": "OUT"}),
        ],
    )
    ensemble_model(
        repo,
        "batch_ens",
        [fp32("IN", [4])],
        [fp32("OUT", [4])],
        [step("batched", {"X": "IN"}, {"Y": "OUT"})],
    )
    ensemble_model(
        repo,
        "labeled",
        [fp32("IN", [10])],
        [fp32("OUT", [10], 'label_filename: "labels.txt"')],
        [step("classifier", {"LOGITS": "IN"}, {"PROBS": "OUT"})],
    )
    write_text(repo / "labeled" / "labels.txt", "\n".join(CLASSIFIER_LABELS) + "\n")
    return repo


@pytest.fixture(scope="module")
def ens_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidalServer]:
    repo = build_ensemble_repository(tmp_path_factory.mktemp("ensemble_repo"))
    with running_server(repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(ens_server: TidalServer) -> Iterator[triton_http.InferenceServerClient]:
    with triton_client(ens_server) as triton:
        yield triton


@pytest.fixture(scope="module")
def http(ens_server: TidalServer) -> Iterator[httpx.Client]:
    with http_client(ens_server, connections=16) as session:
        yield session


# --------------------------------------------------------------------------- serving


def test_tensors_flow_through_the_steps(client):
    data = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32)
    result = client.infer("chain", [infer_input("IN", data)], request_id="req-7")
    np.testing.assert_array_equal(result.as_numpy("OUT"), data * 20)
    np.testing.assert_array_equal(result.as_numpy("DOUBLED"), data * 2)
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        "chain",
        "1",
        "req-7",
    )


def test_requested_outputs_only(client):
    data = np.ones((1, 4), np.float32)
    outputs = [triton_http.InferRequestedOutput("DOUBLED")]
    result = client.infer("chain", [infer_input("IN", data)], outputs=outputs)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["DOUBLED"]


def test_an_ensemble_of_an_ensemble(client):
    data = np.full((1, 4), 0.5, np.float32)
    result = client.infer("a_nested", [infer_input("IN", data)])
    np.testing.assert_array_equal(result.as_numpy("OUT"), data * 20)


def test_metadata_reports_the_ensemble(client):
    metadata = client.get_model_metadata("chain")
    assert metadata["platform"] == "ensemble"
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "IN", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in metadata["outputs"]] == ["OUT", "DOUBLED"]


def test_config_reports_the_steps(client):
    config = client.get_model_config("chain")
    assert config["platform"] == "ensemble"
    assert config["backend"] == ""
    assert config.get("instance_group", []) == []
    steps = config["ensemble_scheduling"]["step"]
    assert [(s["model_name"], s["model_version"]) for s in steps] == [
        ("double", -1),
        ("tenfold", -1),
    ]
    assert steps[1]["input_map"] == {"X": "DOUBLED"}
    assert steps[1]["output_map"] == {"Y": "OUT"}


def test_concurrent_ensemble_requests_batch_in_the_step(http):
    def call(i: int) -> httpx.Response:
        body = {"inputs": [{"name": "IN", "shape": [1, 4], "datatype": "FP32", "data": [i] * 4}]}
        return http.post("/v2/models/batch_ens/infer", json=body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(call, range(8)))
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [3.0 * i] * 4
    (step_stats,) = http.get("/v2/models/batched/stats").json()["model_stats"]
    assert step_stats["inference_count"] == 8
    # The step's dynamic batcher merged requests that came from separate ensemble requests.
    assert step_stats["execution_count"] < 8
    assert max(b["batch_size"] for b in step_stats["batch_stats"]) > 1
    (ens_stats,) = http.get("/v2/models/batch_ens/stats").json()["model_stats"]
    assert ens_stats["inference_stats"]["success"]["count"] == 8


def test_a_failing_step_fails_only_its_request(http, client):
    def call(index: int) -> httpx.Response:
        body = {
            "inputs": [
                {"name": "IN", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
                {"name": "IDX", "shape": [1, 1], "datatype": "INT64", "data": [index]},
            ]
        }
        return http.post("/v2/models/pick/infer", json=body)

    with ThreadPoolExecutor(max_workers=3) as pool:
        good_a, bad, good_b = pool.map(call, [1, 7, 3])
    assert good_a.json()["outputs"][0]["data"] == [4.0]
    assert good_b.json()["outputs"][0]["data"] == [8.0]
    message = error_message(bad, 500)
    assert message.startswith("in ensemble 'pick', model 'gather' version 1 failed to execute")
    assert client.is_model_ready("pick")
    assert call(0).json()["outputs"][0]["data"] == [2.0]


def test_a_bad_request_is_refused_with_the_ensembles_names(client):
    data = np.ones((1, 5), np.float32)
    with pytest.raises(InferenceServerException) as info:
        client.infer("chain", [infer_input("IN", data)])
    assert "unexpected shape for input 'IN' for model 'chain'" in str(info.value)


def test_classification_of_an_ensemble_output(client):
    logits = np.zeros((1, 10), np.float32)
    logits[0, 3], logits[0, 7] = 0.9, 0.5
    outputs = [triton_http.InferRequestedOutput("OUT", class_count=2)]
    result = client.infer("labeled", [infer_input("IN", logits)], outputs=outputs)
    top = [item.decode() for item in result.as_numpy("OUT").ravel()]
    assert top == [f"0.900000:3:{CLASSIFIER_LABELS[3]}", f"0.500000:7:{CLASSIFIER_LABELS[7]}"]


# --------------------------------------------------------------------------- load-time checks

BROKEN = {
    "missing_step": (
        [step("nowhere", {"X": "IN"}, {"Y": "OUT"})],
        "ensemble 'missing_step': step 0 (model 'nowhere'): the model is not available",
    ),
    "bad_input_map": (
        [step("double", {"INPUT": "IN"}, {"Y": "OUT"})],
        "ensemble 'bad_input_map': step 0 (model 'double'): input_map maps ensemble tensor "
        "'IN' to 'INPUT', which is not an input of the model (its inputs: X)",
    ),
    "bad_output_map": (
        [step("double", {"X": "IN"}, {"Z": "OUT"})],
        "ensemble 'bad_output_map': step 0 (model 'double'): output_map maps 'Z' to ensemble "
        "tensor 'OUT', but the model has no such output (its outputs: Y)",
    ),
    "unwritten_output": (
        [step("double", {"X": "IN"}, {"Y": "other"})],
        "ensemble 'unwritten_output': ensemble output 'OUT' is not written by any step",
    ),
    "wrong_type": (
        [step("gather", {"DATA": "IN", "IDX": "IN"}, {"OUT": "OUT"})],
        "ensemble 'wrong_type': ensemble tensor 'IN' has inconsistent data types: TYPE_FP32 in "
        "ensemble 'wrong_type' but TYPE_INT64 in model 'gather'",
    ),
}


def test_broken_ensembles_fail_to_load_with_clear_messages(tmp_path, start_server):
    scale_model(tmp_path, "double", 2.0)
    gather_model(tmp_path)
    for name, (steps, _) in BROKEN.items():
        ensemble_model(tmp_path, name, [fp32("IN", [4])], [fp32("OUT", [4])], steps)
    ensemble_model(
        tmp_path,
        "fine",
        [fp32("IN", [4])],
        [fp32("OUT", [4])],
        [step("double", {"X": "IN"}, {"Y": "OUT"})],
    )
    proc = start_server(tmp_path, flags=["--exit-on-error=false", "--strict-readiness=false"])
    with http_client(proc) as session:
        assert session.get("/v2/models/fine/ready").status_code == 200
        for name, (_, expected) in BROKEN.items():
            assert session.get(f"/v2/models/{name}/ready").status_code != 200, name
            response = session.get(f"/v2/models/{name}")
            assert response.status_code >= 400, name
            assert expected in response.json()["error"], name
            assert expected in proc.stderr, name


def test_an_ensemble_that_fails_to_load_stops_a_strict_server(tmp_path, start_server):
    scale_model(tmp_path, "double", 2.0)
    steps, expected = BROKEN["missing_step"]
    ensemble_model(tmp_path, "missing_step", [fp32("IN", [4])], [fp32("OUT", [4])], steps)
    proc = start_server(tmp_path, wait=False)
    assert proc.wait_exited() != 0
    assert expected in proc.stderr


# --------------------------------------------------------------------------- Python + ONNX + Python

PREPROCESS = '''
import numpy as np
import triton_python_backend_utils as pb_utils

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


class TritonPythonModel:
    """HWC uint8 images -> normalized CHW float32, as an image classifier expects."""

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            data = ((images.astype(np.float32) / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)
            tensor = pb_utils.Tensor("DATA", np.ascontiguousarray(data))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses
'''

POSTPROCESS = '''
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Class scores -> the best label and its softmax probability."""

    def initialize(self, args):
        path = os.path.join(args["model_repository"], "labels.txt")
        with open(path, encoding="utf-8") as labels:
            self.labels = labels.read().splitlines()

    def execute(self, requests):
        responses = []
        for request in requests:
            scores = pb_utils.get_input_tensor_by_name(request, "SCORES").as_numpy()
            shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
            probs = shifted / shifted.sum(axis=1, keepdims=True)
            best = probs.argmax(axis=1)
            names = np.array([[self.labels[i].encode()] for i in best], dtype=np.object_)
            prob = probs[np.arange(len(best)), best].reshape(-1, 1).astype(np.float32)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("LABEL", names), pb_utils.Tensor("PROB", prob)]
                )
            )
        return responses
'''


def python_model(repo: Path, name: str, source: str, inputs: list[str], outputs: list[str]) -> None:
    write_text(repo / name / "1" / "model.py", source)
    text = model_config(name, inputs, outputs, 8, "dynamic_batching { }", platform="")
    write_text(repo / name / "config.pbtxt", text.replace('platform: ""', 'backend: "python"'))


def build_classifier_pipeline(repo: Path) -> Path:
    """The densenet example of the built-in repository between Python pre- and
    post-processing, as Triton's image-classification ensembles are built."""
    import shutil

    from tidal.examples import example_repository

    shutil.copytree(example_repository() / "densenet_onnx", repo / "densenet_onnx")
    labels = (repo / "densenet_onnx" / "densenet_labels.txt").read_text()
    python_model(
        repo,
        "preprocess",
        PREPROCESS,
        [tensor_config("IMAGE", "TYPE_UINT8", [224, 224, 3])],
        [fp32("DATA", [3, 224, 224])],
    )
    python_model(
        repo,
        "postprocess",
        POSTPROCESS,
        [fp32("SCORES", [1000])],
        [tensor_config("LABEL", "TYPE_STRING", [1]), fp32("PROB", [1])],
    )
    write_text(repo / "postprocess" / "labels.txt", labels)
    ensemble_model(
        repo,
        "densenet_ensemble",
        [tensor_config("IMAGE", "TYPE_UINT8", [224, 224, 3])],
        [tensor_config("LABEL", "TYPE_STRING", [1]), fp32("PROB", [1])],
        [
            step("preprocess", {"IMAGE": "IMAGE"}, {"DATA": "data"}),
            step("densenet_onnx", {"data_0": "data"}, {"fc6_1": "scores"}),
            step("postprocess", {"SCORES": "scores"}, {"LABEL": "LABEL", "PROB": "PROB"}),
        ],
        max_batch_size=8,
    )
    return repo


def expected_classes(repo: Path, images: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """The same pipeline computed in this process with ONNX Runtime and numpy."""
    import onnxruntime as ort

    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    data = ((images.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    session = ort.InferenceSession(
        str(repo / "densenet_onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (scores,) = session.run(["fc6_1"], {"data_0": np.ascontiguousarray(data)})
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)
    labels = (repo / "postprocess" / "labels.txt").read_text().splitlines()
    best = probs.argmax(axis=1)
    return [labels[i].encode() for i in best], probs[np.arange(len(best)), best]


def test_python_preprocessing_onnx_classifier_python_postprocessing(tmp_path, start_server):
    repo = build_classifier_pipeline(tmp_path)
    proc = start_server(repo)
    images = np.random.default_rng(7).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)

    def classify(_: int):
        # One client per thread: tritonclient's HTTP client is not thread-safe.
        with triton_client(proc, timeout=60.0) as triton:
            return triton.infer("densenet_ensemble", [infer_input("IMAGE", images, "UINT8")])

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(classify, range(3)))
    labels, probs = expected_classes(repo, images)
    for result in results:
        assert result.as_numpy("LABEL").ravel().tolist() == labels
        np.testing.assert_allclose(result.as_numpy("PROB").ravel(), probs, rtol=1e-4)
    with http_client(proc) as session:
        metadata = session.get("/v2/models/densenet_ensemble").json()
    assert metadata["platform"] == "ensemble"
    assert metadata["inputs"] == [
        {"name": "IMAGE", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}
    ]
