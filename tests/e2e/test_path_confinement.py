"""A model is what lies inside its folder: every path a config, a load override or a request
names must resolve inside the model's folder (symlinks followed), and a model name in a control
route is never a path. Real servers, real tritonclient HTTP and gRPC, hostile values."""

from __future__ import annotations

import base64
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from .conftest import TidalServer, error_message, http_client, running_server
from .control_models import scale_body, scale_bytes, scale_model, write_atomic

X = [1.0, 2.0, 3.0, 4.0]
OUTSIDE = "the model's folder"
SCALE_IO = {
    "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}],
    "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [4]}],
}
EVIL = """
from pathlib import Path
Path({marker!r}).write_text("pwned")

class TritonPythonModel:
    def execute(self, requests):
        return []
"""


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``base/repo`` (the repository) next to ``base/x`` (files no model may reach)."""
    base = tmp_path_factory.mktemp("confine")
    repo, outside = base / "repo", base / "x"
    outside.mkdir()
    (outside / "model.onnx").write_bytes(scale_bytes(9.0))
    (outside / "labels.txt").write_text("secret\n" * 4)
    (outside / "data.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (outside / "env" / "bin").mkdir(parents=True)
    os.symlink(os.path.realpath("/usr/bin/python3"), outside / "env" / "bin" / "python3")
    scale_model(repo, "m", 2.0)
    # "../../x/evil.py" from m/1 lands in the repository's own "x" folder: another model's.
    marker = base / "marker"
    write_atomic(repo / "x" / "evil.py", EVIL.format(marker=str(marker)))
    (outside / "evil.py").write_text(EVIL.format(marker=str(marker)))
    linked = repo / "linked"
    (linked / "1").mkdir(parents=True)
    os.symlink(outside / "model.onnx", linked / "1" / "model.onnx")
    write_atomic(
        linked / "config.pbtxt",
        (repo / "m" / "config.pbtxt").read_text().replace('"m"', '"linked"'),
    )
    return {"base": base, "repo": repo, "outside": outside, "marker": marker}


@pytest.fixture(scope="module")
def server(layout: dict[str, Path]) -> Iterator[TidalServer]:
    flags = ["--model-control-mode=explicit", "--grpc-address", "127.0.0.1"]
    with running_server(layout["repo"], flags=flags) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server: TidalServer) -> Iterator[httpx.Client]:
    with http_client(server) as http:
        yield http


def _load(client: httpx.Client, name: str, config: dict | None = None) -> httpx.Response:
    body = {"parameters": {"config": json.dumps(config)}} if config is not None else None
    return client.post(f"/v2/repository/models/{name}/load", json=body)


def _onnx(**fields) -> dict:
    return {"backend": "onnxruntime", "max_batch_size": 4, **SCALE_IO, **fields}


def _refused(response: httpx.Response, name: str, field: str, value: str, base: Path) -> str:
    message = error_message(response, 400)
    assert message.startswith(f"load failed for model '{name}': "), message
    assert f"{field} '{value}' " in message and OUTSIDE in message, message
    assert str(base) not in message and os.path.realpath(base) not in message, message
    return message


def _not_served(client: httpx.Client, name: str) -> None:
    response = client.post(f"/v2/models/{name}/infer", json=scale_body(X))
    assert response.status_code != 200, response.text


# -- model file ------------------------------------------------------------------------------


def test_override_walking_out_of_the_folder_is_refused(client, layout):
    value = "../../../x/model.onnx"
    response = _load(client, "m", _onnx(default_model_filename=value))
    _refused(response, "m", "default_model_filename", value, layout["base"])
    _not_served(client, "m")


def test_override_with_an_absolute_path_is_refused(client, layout):
    value = str(layout["outside"] / "model.onnx")
    response = _load(client, "m", _onnx(default_model_filename=value))
    _refused(response, "m", "default_model_filename", value, layout["repo"])
    _not_served(client, "m")


def test_grpc_override_walking_out_is_invalid_argument(server, layout):
    config = json.dumps(_onnx(default_model_filename="../../../x/model.onnx"))
    with (
        triton_grpc.InferenceServerClient(server.grpc_url) as grpc_client,
        pytest.raises(InferenceServerException) as caught,
    ):
        grpc_client.load_model("m", config=config)
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value
    message = caught.value.message()
    assert "default_model_filename '../../../x/model.onnx' is outside" in message, message
    assert str(layout["base"]) not in message


@pytest.mark.parametrize("value", ["../../x/evil.py", "../../../x/evil.py"])
def test_python_file_outside_the_folder_never_runs(client, layout, value):
    config = {"backend": "python", "default_model_filename": value, **SCALE_IO}
    response = _load(client, "m", config)
    _refused(response, "m", "default_model_filename", value, layout["base"])
    assert not layout["marker"].exists(), "the Python file outside the model's folder ran"


def test_symlink_pointing_out_is_refused(client, layout):
    response = _load(client, "linked")
    _refused(response, "linked", "default_model_filename", "model.onnx", layout["base"])
    _not_served(client, "linked")


def test_symlink_pointing_out_loads_with_the_flag(layout):
    flags = ["--model-control-mode=explicit", "--allow-symlinks-out-of-model-dir"]
    with running_server(layout["repo"], flags=flags) as proc, http_client(proc) as http:
        assert _load(http, "linked").status_code == 200
        response = http.post("/v2/models/linked/infer", json=scale_body(X))
        assert response.json()["outputs"][0]["data"] == [9.0, 18.0, 27.0, 36.0]
        # The flag follows links; it never lets a walk out or an absolute path through.
        value = "../../../x/model.onnx"
        response = _load(http, "m", _onnx(default_model_filename=value))
        _refused(response, "m", "default_model_filename", value, layout["base"])


# -- the other fields that name files --------------------------------------------------------


def test_label_file_outside_is_refused(client, layout):
    value = "../../x/labels.txt"
    config = _onnx()
    config["output"] = [{**SCALE_IO["output"][0], "label_filename": value}]
    _refused(_load(client, "m", config), "m", "label_filename", value, layout["base"])


@pytest.mark.parametrize(
    "value", ["$$TRITON_MODEL_DIRECTORY/../x/env", "../x/env", "{outside}/env"]
)
def test_execution_environment_outside_is_refused(client, layout, value):
    value = value.format(outside=layout["outside"])
    config = {
        "backend": "python",
        **SCALE_IO,
        "parameters": {"EXECUTION_ENV_PATH": {"string_value": value}},
    }
    _refused(_load(client, "m", config), "m", "EXECUTION_ENV_PATH", value, layout["repo"])


@pytest.mark.parametrize("value", ["../../x/data.bin", "../config.pbtxt", "/etc/passwd"])
def test_warmup_file_outside_its_folder_is_refused(client, layout, value):
    warmup = {
        "name": "w",
        "batch_size": 1,
        "inputs": {"X": {"data_type": "TYPE_FP32", "dims": [4], "input_data_file": value}},
    }
    config = _onnx(model_warmup=[warmup])
    message = error_message(_load(client, "m", config), 400)
    assert message == (
        f"load failed for model 'm': model 'm': input_data_file '{value}' must name a file "
        "inside the model's 'warmup' folder"
    )


# -- no answer tells what lies outside -------------------------------------------------------


def test_existing_and_missing_outside_files_answer_alike(client, layout):
    answers = []
    for value in ("/etc/passwd", "/etc/no-such-file-here"):
        message = error_message(_load(client, "m", _onnx(default_model_filename=value)), 400)
        answers.append(message.replace(value, "<value>"))
    assert answers[0] == answers[1], answers
    assert str(layout["repo"]) not in answers[0], answers[0]
    # The same value, before and after the file appears: byte-identical answers.
    value, target = "../../../x/later.onnx", layout["outside"] / "later.onnx"
    before = _load(client, "m", _onnx(default_model_filename=value)).content
    target.write_bytes(scale_bytes(3.0))
    after = _load(client, "m", _onnx(default_model_filename=value)).content
    assert before == after, (before, after)


def test_missing_model_file_names_no_server_path(client, layout):
    response = _load(client, "m", _onnx(default_model_filename="nowhere.onnx"))
    message = error_message(response, 400)
    assert "nowhere.onnx" in message
    assert str(layout["base"]) not in message and os.path.realpath(layout["base"]) not in message


# -- a repository read from disk -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_escaping_config_pbtxt_is_unavailable_at_start(tmp_path, mode):
    repo, outside = tmp_path / "repo", tmp_path / "x"
    outside.mkdir()
    (outside / "model.onnx").write_bytes(scale_bytes(9.0))
    value = "../../../x/model.onnx"
    scale_model(repo, "esc", 2.0, config_extra=f'default_model_filename: "{value}"')
    flags = [f"--model-control-mode={mode}", "--exit-on-error=false"]
    if mode == "poll":
        flags += ["--repository-poll-secs=1"]
    with running_server(repo, flags=flags) as proc, http_client(proc) as http:
        (row,) = [e for e in http.post("/v2/repository/index").json() if e["name"] == "esc"]
        assert row["state"] == "UNAVAILABLE", row
        assert f"default_model_filename '{value}' is outside {OUTSIDE}" in row["reason"], row
        assert str(tmp_path) not in row["reason"]
        _not_served(http, "esc")


# -- model names are never paths -------------------------------------------------------------

# Percent-encoded: httpx sends them as they are (literal dot segments: see the next test).
BAD_NAMES = ["%2E%2E", "%2E", "a%2Fb", "..%2F..%2Fetc", "..%2Fm", "a%00b", "a%5Cb", "%2F"]


def _missing_answer(response: httpx.Response, shown: str) -> str:
    message = error_message(response, 500)
    assert message == (
        f"failed to load '{shown}', failed to poll from model repository: model not found in any "
        "model repository"
    ), message
    return message


@pytest.mark.parametrize("raw", BAD_NAMES)
def test_path_like_names_get_the_missing_model_answer(server, client, raw):
    shown = httpx.URL(f"http://h/{raw}").path[1:]  # what the route decodes
    url = httpx.URL(server.base_url, raw_path=f"/v2/repository/models/{raw}/load".encode())
    _missing_answer(client.post(url), shown)
    # With files the folder comes from the request: still no model by that name.
    files = {"file:1/model.onnx": ""}
    body = {"parameters": {"config": json.dumps(_onnx()), **files}}
    _missing_answer(client.post(url, json=body), shown)
    unload = httpx.URL(server.base_url, raw_path=f"/v2/repository/models/{raw}/unload".encode())
    assert client.post(unload).status_code == 200  # as for any model never loaded


@pytest.mark.parametrize("segment", ["..", "."])
def test_dot_segment_in_the_raw_path(server, segment):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:  # http.client sends the path as written, dot segments included
        connection.request("POST", f"/v2/repository/models/{segment}/load", body=b"")
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 500, body
    assert body["error"] == (
        f"failed to load '{segment}', failed to poll from model repository: model not found in "
        "any model repository"
    )


@pytest.mark.parametrize("name", ["..", "../m", "a/b", "a\\b", "a\0b", "."])
def test_grpc_path_like_names_get_the_missing_model_answer(server, name):
    with triton_grpc.InferenceServerClient(server.grpc_url) as grpc_client:
        with pytest.raises(InferenceServerException) as missing:
            grpc_client.load_model("nowhere")
        with pytest.raises(InferenceServerException) as caught:
            grpc_client.load_model(name)
        with pytest.raises(InferenceServerException) as pushed:
            grpc_client.load_model(
                name, config=json.dumps(_onnx()), files={"file:1/model.onnx": scale_bytes(1.0)}
            )
    assert caught.value.status() == missing.value.status() == pushed.value.status()
    expected = missing.value.message().replace("'nowhere'", f"'{name}'")
    assert caught.value.message() == pushed.value.message() == expected


def test_pushed_model_takes_its_own_name_not_its_folders(client):
    body = {
        "parameters": {
            "config": json.dumps(_onnx()),
            "file:1/model.onnx": base64.b64encode(scale_bytes(4.0)).decode(),
        }
    }
    assert client.post("/v2/repository/models/pushed/load", json=body).status_code == 200
    # It was named after the temporary folder the files were written to (tidal-pushed-...).
    assert client.get("/v2/models/pushed/config").json()["name"] == "pushed"
    assert client.post("/v2/repository/models/pushed/unload").status_code == 200
