"""Model control through a real server: the repository extension (index, load, unload) in
modes none, explicit and poll, reloads under load, overrides, unload draining, and warmup."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from .conftest import TidalServer, error_message, http_client, running_server, triton_client
from .control_models import (
    add_version,
    delay_file,
    remove_tree,
    scale_body,
    scale_bytes,
    scale_config,
    scale_model,
    slow_body,
    slow_model,
    write_atomic,
)
from .models import garbage_model, model_config, tensor_config
from .scheduling_models import gather_fp32

NOT_ALLOWED = "explicit model load / unload is not allowed if polling is enabled"
# Thousands of warmup runs: a reload that takes a while, as big models' do.
LONG_WARMUP = """model_warmup [ { name: "long" batch_size: 1 count: 60000 inputs { key: "X"
  value: { data_type: TYPE_FP32 dims: [ 4 ] random_data: true } } } ]"""
X = [1.0, 2.0, 3.0, 4.0]


def index(client: httpx.Client, ready: bool | None = None) -> list[dict]:
    body = None if ready is None else {"ready": ready}
    response = client.post("/v2/repository/index", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def entries(client: httpx.Client, name: str) -> list[dict]:
    return [e for e in index(client) if e["name"] == name]


def scaled(client: httpx.Client, model: str) -> list[float]:
    response = client.post(f"/v2/models/{model}/infer", json=scale_body(X))
    assert response.status_code == 200, response.text
    return response.json()["outputs"][0]["data"]


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Traffic:
    """Threads sending infer requests to one model until stopped; every answer is recorded
    with the time it was sent, so failures can be counted for any window."""

    def __init__(self, base_url: str, model: str, threads: int = 2) -> None:
        self.base_url = base_url
        self.model = model
        self.results: list[tuple[float, int, list[float] | str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _send(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30.0) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.post(f"/v2/models/{self.model}/infer", json=scale_body(X))
                    ok = response.status_code == 200
                    outcome = response.json()["outputs"][0]["data"] if ok else response.text
                    status = response.status_code
                except httpx.HTTPError as exc:  # a dropped connection counts as a failure
                    status, outcome = 0, repr(exc)
                with self._lock:
                    self.results.append((sent, status, outcome))

    def window(self, start: float, end: float) -> list[tuple[float, int, list[float] | str]]:
        with self._lock:
            return [r for r in self.results if start <= r[0] <= end]

    def failures(self) -> list[tuple[float, int, list[float] | str]]:
        with self._lock:
            return [r for r in self.results if r[1] != 200]

    def wait_for_answers(self, count: int, timeout: float = 20.0) -> None:
        wait_until(lambda: len(self.results) >= count, timeout, f"{count} answers")


# ------------------------------------------------------------------------------- mode none


@pytest.fixture(scope="module")
def none_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("none_repo")
    scale_model(repo, "two_versions", 2.0, 1, config_extra="version_policy: { all { } }")
    scale_model(repo, "two_versions", 3.0, 2, config_extra="version_policy: { all { } }")
    scale_model(repo, "plain", 2.0)
    garbage_model(repo, "garbage")
    return repo


@pytest.fixture(scope="module")
def none_server(none_repo: Path) -> Iterator[TidalServer]:
    with running_server(none_repo, flags=["--exit-on-error=false"]) as proc:
        yield proc


@pytest.fixture
def none_client(none_server: TidalServer) -> Iterator[httpx.Client]:
    with http_client(none_server) as client:
        yield client


def test_server_metadata_advertises_the_repository_extension(none_client):
    extensions = none_client.get("/v2").json()["extensions"]
    assert "model_repository" in extensions
    assert "model_repository(unload_dependents)" in extensions


def test_index_lists_every_version_with_state_and_reason(none_client):
    listed = index(none_client)
    assert [e["name"] for e in listed] == ["garbage", "plain", "two_versions", "two_versions"]
    garbage, plain, first, second = listed
    assert plain == {"name": "plain", "version": "1", "state": "READY"}
    assert first == {"name": "two_versions", "version": "1", "state": "READY"}
    assert second == {"name": "two_versions", "version": "2", "state": "READY"}
    assert garbage["state"] == "UNAVAILABLE"
    assert "garbage" in garbage["reason"]
    assert index(none_client, ready=False) == listed


def test_index_ready_filter(none_client):
    names = [(e["name"], e.get("version")) for e in index(none_client, ready=True)]
    assert names == [("plain", "1"), ("two_versions", "1"), ("two_versions", "2")]


def test_index_through_tritonclient(none_server):
    client = triton_http.InferenceServerClient(none_server.url)
    try:
        listed = client.get_model_repository_index()
    finally:
        client.close()
    assert {"name": "plain", "version": "1", "state": "READY"} in listed


def test_none_mode_refuses_load_and_unload(none_server, none_client):
    for action in ("load", "unload"):
        response = none_client.post(f"/v2/repository/models/plain/{action}")
        assert error_message(response, 503) == NOT_ALLOWED
    client = triton_http.InferenceServerClient(none_server.url)
    try:
        with pytest.raises(InferenceServerException, match=re.escape(NOT_ALLOWED)):
            client.load_model("plain")
        with pytest.raises(InferenceServerException, match=re.escape(NOT_ALLOWED)):
            client.unload_model("plain")
    finally:
        client.close()
    assert scaled(none_client, "plain") == [2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v2/repository/index", b'{"ready": "yes"}', 400, "Invalid value for 'ready'"),
        ("/v2/repository/index", b'{"ready": ', 400, "failed to parse"),
        ("/v2/repository/index", b"[1, 2]", 400, "must be a JSON object"),
        ("/v2/repository/index", b"[" * 5000 + b"]" * 5000, 400, "nesting depth"),
        ("/v2/repository/main/index", b"", 501, "'repository_name' specification"),
        ("/v2/repository/main/models/plain/load", b"", 501, "'repository_name' specification"),
    ],
)
def test_bad_index_requests(none_client, path, body, status, needle):
    assert needle in error_message(none_client.post(path, content=body), status)


def test_repository_endpoints_take_post_only(none_client):
    for path in ("/v2/repository/index", "/v2/repository/models/plain/load"):
        response = none_client.get(path)
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"


# --------------------------------------------------------------------------- explicit mode


@pytest.fixture(scope="module")
def explicit_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("explicit_repo")
    scale_model(repo, "alpha", 2.0)
    scale_model(repo, "beta", 3.0)
    return repo


@pytest.fixture(scope="module")
def explicit_server(explicit_repo: Path) -> Iterator[TidalServer]:
    flags = ["--model-control-mode=explicit", "--load-model", "alpha"]
    with running_server(explicit_repo, flags=flags) as proc:
        yield proc


@pytest.fixture
def client(explicit_server: TidalServer) -> Iterator[httpx.Client]:
    with http_client(explicit_server, timeout=60.0) as http:
        yield http


@pytest.fixture
def triton(explicit_server: TidalServer) -> Iterator[triton_http.InferenceServerClient]:
    with triton_client(explicit_server, timeout=60.0) as client:
        yield client


def test_explicit_start_loads_only_the_named_models(client):
    assert entries(client, "alpha") == [{"name": "alpha", "version": "1", "state": "READY"}]
    beta = entries(client, "beta")
    assert beta in ([{"name": "beta"}], [{"name": "beta", "version": "1", "state": "READY"}])
    assert client.get("/v2/health/ready").status_code == 200


def test_load_infer_unload(explicit_repo, client, triton):
    scale_model(explicit_repo, "cycle", 4.0)
    assert entries(client, "cycle") == [{"name": "cycle"}]
    assert not triton.is_model_ready("cycle")
    triton.load_model("cycle")
    assert triton.is_model_ready("cycle")
    assert scaled(client, "cycle") == [4.0, 8.0, 12.0, 16.0]
    assert entries(client, "cycle") == [{"name": "cycle", "version": "1", "state": "READY"}]
    triton.unload_model("cycle")
    assert entries(client, "cycle") == [
        {"name": "cycle", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
    ]
    response = client.post("/v2/models/cycle/infer", json=scale_body(X))
    assert "cycle" in error_message(response, 404)  # Triton 2.51: no available versions
    assert client.get("/v2/health/ready").status_code == 200  # unloaded on purpose
    triton.load_model("cycle")  # and back
    assert scaled(client, "cycle") == [4.0, 8.0, 12.0, 16.0]


def test_load_unknown_model(client, triton):
    message = error_message(client.post("/v2/repository/models/nowhere/load"), 500)
    assert message.startswith("failed to load 'nowhere', failed to poll from model repository")
    with pytest.raises(InferenceServerException, match="failed to poll from model repository"):
        triton.load_model("nowhere")


def test_unload_of_a_model_never_loaded_does_nothing(client):
    assert client.post("/v2/repository/models/nowhere/unload").status_code == 200
    assert client.post("/v2/repository/models/beta/unload").status_code == 200


def _log_count(server, text: str, expected: int) -> int:
    """How often ``text`` is in the server's log, once ``expected`` lines have arrived (the
    thread reading the log may lag the HTTP answer) and a moment more has passed for extras."""
    deadline = time.monotonic() + 5
    while server.stderr.count(text) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    return server.stderr.count(text)


def test_unchanged_model_is_not_loaded_again(explicit_repo, explicit_server, client):
    scale_model(explicit_repo, "steady", 2.0)
    for _ in range(3):
        assert client.post("/v2/repository/models/steady/load").status_code == 200
    assert _log_count(explicit_server, "loaded model 'steady' version 1", 1) == 1
    write_atomic(explicit_repo / "steady" / "1" / "model.onnx", scale_bytes(6.0))
    assert client.post("/v2/repository/models/steady/load").status_code == 200
    assert _log_count(explicit_server, "loaded model 'steady' version 1", 2) == 2
    assert scaled(client, "steady") == [6.0, 12.0, 18.0, 24.0]


def test_config_override_then_back_to_the_folder(explicit_repo, client, triton):
    scale_model(explicit_repo, "override", 2.0)
    triton.load_model("override")
    assert client.get("/v2/models/override/config").json()["max_batch_size"] == 4
    config = {
        "name": "override",
        "backend": "onnxruntime",
        "max_batch_size": 2,
        "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}],
        "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [4]}],
    }
    triton.load_model("override", config=json.dumps(config))
    assert client.get("/v2/models/override/config").json()["max_batch_size"] == 2
    assert scaled(client, "override") == [2.0, 4.0, 6.0, 8.0]
    triton.load_model("override")  # no override: the folder's config.pbtxt again
    assert client.get("/v2/models/override/config").json()["max_batch_size"] == 4


def _load_body(config: str | None = None, files: dict[str, bytes] | None = None) -> dict:
    parameters: dict[str, str] = {}
    if config is not None:
        parameters["config"] = config
    for name, content in (files or {}).items():
        parameters[name] = base64.b64encode(content).decode()
    return {"parameters": parameters}


def test_model_pushed_as_files(client):
    config = json.dumps(
        {
            "backend": "onnxruntime",
            "max_batch_size": 4,
            "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [4]}],
            "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [4]}],
        }
    )
    body = _load_body(config, {"file:1/model.onnx": scale_bytes(7.0)})
    response = client.post("/v2/repository/models/pushed/load", json=body)
    assert response.status_code == 200, response.text
    assert scaled(client, "pushed") == [7.0, 14.0, 21.0, 28.0]
    assert entries(client, "pushed") == [{"name": "pushed", "version": "1", "state": "READY"}]
    assert client.post("/v2/repository/models/pushed/unload").status_code == 200
    assert entries(client, "pushed")[0]["reason"] == "unloaded"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            _load_body(None, {"file:1/model.onnx": b"x"}),
            "Load parameter 'config' must be specified for model file override",
        ),
        (_load_body("{}", {"file:../escape.onnx": b"x"}), "Invalid file parameter 'file:../"),
        (_load_body("{}", {"file:/etc/x": b"x"}), "Invalid file parameter 'file:/etc/x'"),
        (
            _load_body("{}", {"file:1": b"x", "file:1/model.onnx": b"x"}),
            "directory has been created as a file",
        ),
        ({"parameters": {"file:1/model.onnx": "%%%"}}, "is not valid base64"),
        ({"parameters": {"config": 5}}, "must have string type"),
        ({"parameters": {"config": "{not json"}}, "Invalid config override"),
        ({"parameters": {"config": '{"name": "other"}'}}, "directory name must equal model name"),
        ({"parameters": {"colour": "blue"}}, "Unrecognized load parameter 'colour'"),
        ({"parameters": []}, "'parameters' must be a JSON object"),
    ],
)
def test_bad_load_requests(client, body, needle):
    response = client.post("/v2/repository/models/alpha/load", json=body)
    assert needle in error_message(response, 400)
    assert scaled(client, "alpha") == [2.0, 4.0, 6.0, 8.0]


def test_bad_unload_request(client):
    body = {"parameters": {"unload_dependents": "yes"}}
    response = client.post("/v2/repository/models/alpha/unload", json=body)
    assert "Unable to parse 'unload_dependents'" in error_message(response, 400)
    assert scaled(client, "alpha") == [2.0, 4.0, 6.0, 8.0]


def test_failed_reload_keeps_the_old_version_serving(explicit_repo, client, triton):
    folder = scale_model(explicit_repo, "sturdy", 2.0)
    triton.load_model("sturdy")
    good_config = (folder / "config.pbtxt").read_text()

    write_atomic(folder / "config.pbtxt", "input [ {")
    message = error_message(client.post("/v2/repository/models/sturdy/load"), 400)
    assert message.startswith("load failed for model 'sturdy': model 'sturdy': ")
    assert scaled(client, "sturdy") == [2.0, 4.0, 6.0, 8.0]
    assert entries(client, "sturdy") == [{"name": "sturdy", "version": "1", "state": "READY"}]

    write_atomic(folder / "config.pbtxt", good_config)
    write_atomic(folder / "1" / "model.onnx", b"not an onnx model")
    message = error_message(client.post("/v2/repository/models/sturdy/load"), 400)
    assert message.startswith("load failed for model 'sturdy': ")
    assert scaled(client, "sturdy") == [2.0, 4.0, 6.0, 8.0]
    assert client.get("/v2/health/ready").status_code == 200

    write_atomic(folder / "1" / "model.onnx", scale_bytes(5.0))  # fixed: the reload goes in
    triton.load_model("sturdy")
    assert scaled(client, "sturdy") == [5.0, 10.0, 15.0, 20.0]


def test_reload_under_load_fails_no_request(explicit_repo, explicit_server, client, triton):
    folder = scale_model(explicit_repo, "busy", 2.0)
    triton.load_model("busy")
    with Traffic(explicit_server.base_url, "busy") as traffic:
        traffic.wait_for_answers(20)
        start = time.monotonic()
        add_version(folder, 2, scale_bytes(3.0))  # a new version, a new config with a
        write_atomic(folder / "config.pbtxt", scale_config("busy", 2, extra=LONG_WARMUP))
        triton.load_model("busy")
        end = time.monotonic()
        count = len(traffic.results)
        traffic.wait_for_answers(count + 20)
    during = traffic.window(start, end)
    failed = traffic.failures()
    print(
        f"\nexplicit reload under load: {len(during)} requests sent during the reload "
        f"({end - start:.2f} s), {len(traffic.results)} in all, {len(failed)} failed"
    )
    assert not failed, failed[:3]
    assert len(during) > 0
    assert traffic.results[-1][2] == [3.0, 6.0, 9.0, 12.0]
    assert entries(client, "busy") == [{"name": "busy", "version": "2", "state": "READY"}]
    assert client.get("/v2/models/busy/config").json()["max_batch_size"] == 2


def test_unload_drains_accepted_requests(explicit_repo, client, triton):
    slow_model(explicit_repo, "slowpoke", config_extra="instance_group [ { count: 2 } ]\n")
    triton.load_model("slowpoke")
    answers: list[httpx.Response] = []

    def slow_request() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60.0) as own:
            answers.append(own.post("/v2/models/slowpoke/infer", json=slow_body(1200)))

    threads = [threading.Thread(target=slow_request) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)  # both accepted and running
    started = time.monotonic()
    assert client.post("/v2/repository/models/slowpoke/unload").status_code == 200
    waited = time.monotonic() - started
    for thread in threads:
        thread.join(60)
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert waited > 0.3, f"unload returned after {waited:.2f} s, before the requests finished"
    assert entries(client, "slowpoke")[0]["state"] == "UNAVAILABLE"
    response = client.post("/v2/models/slowpoke/infer", json=slow_body(1))
    assert "slowpoke" in error_message(response, 404)


# ----------------------------------------------------------------------------------- warmup


def _warm_folder(repo: Path, name: str, warmup: str) -> Path:
    return scale_model(repo, name, 2.0, config_extra=warmup)


def test_warmup_with_zero_random_and_file_data(explicit_repo, client, triton):
    folder = _warm_folder(
        explicit_repo,
        "warm_ok",
        """model_warmup [
  { name: "zeros" batch_size: 2 inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 4 ]
      zero_data: true } } },
  { name: "noise" batch_size: 1 count: 3 inputs { key: "X" value: { data_type: TYPE_FP32
      dims: [ 4 ] random_data: true } } },
  { name: "file" batch_size: 1 inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 4 ]
      input_data_file: "x.bin" } } }
]""",
    )
    write_atomic(folder / "warmup" / "x.bin", np.arange(4, dtype=np.float32).tobytes())
    triton.load_model("warm_ok")
    assert scaled(client, "warm_ok") == [2.0, 4.0, 6.0, 8.0]
    assert client.get("/v2/models/warm_ok/config").json()["model_warmup"][0]["name"] == "zeros"


@pytest.mark.parametrize(
    ("name", "warmup", "needle"),
    [
        (
            "warm_short",
            'model_warmup [ { name: "short" batch_size: 1 inputs { key: "X" value: { '
            'data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "short.bin" } } } ]',
            "warmup setting expects 16 bytes, but the data provided from short.bin only has 4",
        ),
        (
            "warm_wild",
            'model_warmup [ { name: "wild" batch_size: 1 inputs { key: "X" value: { '
            "data_type: TYPE_FP32 dims: [ -1 ] zero_data: true } } } ]",
            "warmup setting expects all variable-size dimensions are specified for input 'X'",
        ),
        (
            "warm_big",
            'model_warmup [ { name: "big" batch_size: 9 inputs { key: "X" value: { '
            "data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]",
            "batch_size 9 is larger than max_batch_size 4",
        ),
    ],
)
def test_warmup_that_cannot_run_fails_the_load(explicit_repo, client, name, warmup, needle):
    folder = _warm_folder(explicit_repo, name, warmup)
    write_atomic(folder / "warmup" / "short.bin", b"\0" * 4)
    message = error_message(client.post(f"/v2/repository/models/{name}/load"), 400)
    assert message.startswith(f"load failed for model '{name}': version 1 is at UNAVAILABLE")
    assert needle in message
    assert entries(client, name)[0]["state"] == "UNAVAILABLE"
    assert needle in entries(client, name)[0]["reason"]


def test_warmup_that_fails_to_execute_fails_the_load(explicit_repo, client):
    folder = explicit_repo / "warm_gather"
    write_atomic(folder / "1" / "model.onnx", gather_fp32().SerializeToString())
    write_atomic(
        folder / "config.pbtxt",
        'name: "warm_gather"\nbackend: "onnxruntime"\nmax_batch_size: 8\n'
        'model_warmup [ { name: "bad_index" batch_size: 1 inputs [\n'
        '  { key: "DATA" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } },\n'
        '  { key: "INDEX" value: { data_type: TYPE_INT64 dims: [ 1 ] input_data_file: "i" } }\n'
        "] } ]\n",
    )
    write_atomic(folder / "warmup" / "i", np.array([7], np.int64).tobytes())  # out of range
    message = error_message(client.post("/v2/repository/models/warm_gather/load"), 400)
    assert "warmup sample 'bad_index' failed" in message
    write_atomic(folder / "warmup" / "i", np.array([3], np.int64).tobytes())
    assert client.post("/v2/repository/models/warm_gather/load").status_code == 200


def test_warmup_runs_before_the_model_is_ready(explicit_repo, client):
    folder = slow_model(
        explicit_repo,
        "warm_slow",
        config_extra='model_warmup [ { name: "wait" batch_size: 1 inputs [\n'
        '  { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } },\n'
        '  { key: "DELAY" value: { data_type: TYPE_INT64 dims: [ 1 ] input_data_file: "d" } }\n'
        "] } ]\n",
    )
    write_atomic(folder / "warmup" / "d", delay_file(1000))
    states: list[str] = []
    done = threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=30.0) as own:
            while not done.is_set():
                listed = [e for e in index(own) if e["name"] == "warm_slow"]
                states.append(listed[0].get("state", "") if listed else "")
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        assert client.post("/v2/repository/models/warm_slow/load").status_code == 200
    finally:
        took = time.monotonic() - started
        done.set()
        watcher.join(30)
    assert took > 0.8, f"the load took {took:.2f} s: the warmup did not run"
    assert "LOADING" in states and "READY" not in states[: states.index("LOADING") + 1]
    assert client.get("/v2/models/warm_slow/ready").status_code == 200


# -------------------------------------------------------------------------- start-up flags


def test_load_model_star_loads_everything(tmp_path, start_server):
    scale_model(tmp_path, "one", 2.0)
    scale_model(tmp_path, "two", 3.0)
    proc = start_server(tmp_path, flags=["--model-control-mode", "EXPLICIT", "--load-model=*"])
    with httpx.Client(base_url=proc.base_url, timeout=30) as client:
        assert [e.get("state") for e in index(client)] == ["READY", "READY"]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--load-model", "*", "--load-model", "one"], "Wildcard model name '*' must be the ONLY"),
        (["--load-model", "missing"], "missing"),
        (["--model-control-mode", "sometimes"], "--model-control-mode must be one of"),
        (["--repository-poll-secs", "0", "--model-control-mode", "poll"], "greater than 0"),
    ],
)
def test_bad_start_up_flags_exit_non_zero(tmp_path, flags, needle):
    scale_model(tmp_path, "one", 2.0)
    mode = [] if "--model-control-mode" in flags else ["--model-control-mode", "explicit"]
    proc = TidalServer(["--model-repository", str(tmp_path), "--http-port", "0", *mode, *flags])
    try:
        code = proc.wait_exited()
    finally:
        proc.stop()
    assert code != 0
    assert needle in proc.stderr


# ----------------------------------------------------------------------------------- poll mode


def test_poll_mode_follows_the_repository_without_failing_a_request(tmp_path, start_server):
    folder = scale_model(tmp_path, "pa", 2.0)
    proc = start_server(
        tmp_path, flags=["--model-control-mode=poll", "--repository-poll-secs", "0.3"]
    )
    with (
        httpx.Client(base_url=proc.base_url, timeout=30) as client,
        Traffic(proc.base_url, "pa") as traffic,
    ):
        assert error_message(client.post("/v2/repository/models/pa/load"), 503) == NOT_ALLOWED
        assert error_message(client.post("/v2/repository/models/pa/unload"), 503) == NOT_ALLOWED
        traffic.wait_for_answers(20)

        scale_model(tmp_path, "pb", 5.0)  # added
        wait_until(
            lambda: entries(client, "pb") == [{"name": "pb", "version": "1", "state": "READY"}],
            what="pb to load",
        )
        assert scaled(client, "pb") == [5.0, 10.0, 15.0, 20.0]

        start = time.monotonic()
        add_version(folder, 2, scale_bytes(3.0))  # a new version
        wait_until(lambda: traffic.results[-1][2] == [3.0, 6.0, 9.0, 12.0], what="version 2")
        assert entries(client, "pa") == [{"name": "pa", "version": "2", "state": "READY"}]

        write_atomic(folder / "config.pbtxt", "input [ {")  # a broken edit: v2 keeps serving
        time.sleep(1.0)
        assert entries(client, "pa") == [{"name": "pa", "version": "2", "state": "READY"}]
        write_atomic(
            folder / "config.pbtxt",
            scale_config("pa", extra="version_policy: { specific { versions: [ 1 ] } }"),
        )  # fixed, and back to version 1
        wait_until(lambda: traffic.results[-1][2] == [2.0, 4.0, 6.0, 8.0], what="version 1")
        end = time.monotonic()

        remove_tree(tmp_path / "pb")  # removed
        wait_until(lambda: entries(client, "pb") == [], what="pb to go")
        assert error_message(client.get("/v2/models/pb"), 404)
        count = len(traffic.results)
        traffic.wait_for_answers(count + 10)
    during = traffic.window(start, end)
    failed = traffic.failures()
    print(
        f"\npoll-mode reloads under load: {len(during)} requests sent during two reloads and a "
        f"failed one ({end - start:.2f} s), {len(traffic.results)} in all, {len(failed)} failed"
    )
    assert not failed, failed[:3]
    assert "reload failed, the loaded versions keep serving" in proc.stderr
    assert proc.stderr.count("reload failed") == 1, "a failed folder must not be retried"


def test_unload_dependents_unloads_the_ensembles_using_a_model(explicit_repo, client):
    folder = explicit_repo / "ens_user"
    config = model_config(
        "ens_user",
        [tensor_config("IN", "TYPE_FP32", [4])],
        [tensor_config("OUT", "TYPE_FP32", [4])],
        max_batch_size=4,
        platform="ensemble",
        extra="""ensemble_scheduling { step [ { model_name: "gamma_step" model_version: -1
  input_map { key: "X" value: "IN" } output_map { key: "Y" value: "OUT" } } ] }""",
    )
    scale_model(explicit_repo, "gamma_step", 2.0)
    write_atomic(folder / "config.pbtxt", config)
    (folder / "1").mkdir(exist_ok=True)
    assert client.post("/v2/repository/models/gamma_step/load").status_code == 200
    response = client.post("/v2/repository/models/ens_user/load")
    if response.status_code != 200:
        pytest.skip(f"ensembles do not load in this build: {response.text[:200]}")
    body = {"parameters": {"unload_dependents": True}}
    assert client.post("/v2/repository/models/gamma_step/unload", json=body).status_code == 200
    assert entries(client, "ens_user")[0]["reason"] == "unloaded"
    assert entries(client, "gamma_step")[0]["reason"] == "unloaded"
