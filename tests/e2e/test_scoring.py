"""``tidal score``: entry scripts served at /score by worker processes sharing one port."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .score_scripts import (
    INIT_FAILS_SCRIPT,
    JSON_SCRIPT,
    NO_RUN_SCRIPT,
    RAW_ASYNC_SCRIPT,
    ScoreServer,
    write_script,
)

TIMEOUT_MS = 1500


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    (folder / "weights.bin").write_bytes(b"\0" * 8)
    return folder


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ScoreServer]:
    script = write_script(tmp_path_factory.mktemp("app"), JSON_SCRIPT)
    env = {"SCORING_TIMEOUT_MS": str(TIMEOUT_MS), "AML_CORS_ORIGINS": "http://example.com"}
    args = ["--entry_script", str(script), "--model_dir", str(model_dir), "--worker_count", "2"]
    server = ScoreServer(args, env).wait_started()
    yield server
    alive = server.proc.poll() is None
    server.stop()
    assert alive, f"tidal score died during the tests:\n{server.stderr}"


@pytest.fixture(scope="module")
def client(json_server: ScoreServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=json_server.base_url, timeout=30) as http:
        yield http


def test_health_route_says_healthy(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == "Healthy"


def test_post_passes_the_body_as_text_and_encodes_the_result(
    client: httpx.Client, model_dir: Path
) -> None:
    response = client.post("/score", content=b'{"data": [1, 2, 3]}')
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["echo"] == {"data": [1, 2, 3]}
    assert body["model_dir"] == str(model_dir)
    assert body["entry_script"].endswith("score.py")
    assert body["app_root"] == str(Path(body["entry_script"]).parent)
    assert body["worker_count"] == "2"
    assert float(response.headers["x-ms-run-fn-exec-ms"]) >= 0


def test_a_string_result_is_json_encoded(client: httpx.Client) -> None:
    response = client.post("/score", json={"text": "hello"})
    assert response.status_code == 200
    assert response.json() == "hello"


def test_get_passes_the_query_string_as_a_dict(client: httpx.Client) -> None:
    response = client.get("/score", params={"a": "1", "b": "two"})
    assert response.status_code == 200, response.text
    assert response.json() == {"query": {"a": "1", "b": "two"}}


def test_request_ids_are_echoed_or_made(client: httpx.Client) -> None:
    given = client.post("/score", json={}, headers={"x-request-id": "req-1"})
    assert given.headers["x-request-id"] == "req-1"
    assert given.headers["x-ms-request-id"] == "req-1"
    assert given.headers["x-ms-client-request-id"] == "req-1"
    made = client.post("/score", json={}, headers={"x-ms-client-request-id": "client-7"})
    made_id = uuid.UUID(made.headers["x-request-id"])
    assert (made_id.version, made_id.variant) == (4, uuid.RFC_4122)
    assert str(made_id) == made.headers["x-request-id"]  # the canonical text form
    assert made.headers["x-ms-request-id"] == made.headers["x-request-id"]
    assert made.headers["x-ms-client-request-id"] == "client-7"
    others = {client.post("/score", json={}).headers["x-request-id"] for _ in range(20)}
    assert len(others | {str(made_id)}) == 21  # a new one each time


def test_options_and_other_methods(client: httpx.Client) -> None:
    options = client.options("/score")
    assert options.status_code == 200
    assert "POST" in options.headers["allow"]
    for method in ("PUT", "DELETE", "PATCH"):
        response = client.request(method, "/score")
        assert response.status_code == 405
        assert "message" in response.json()
    assert client.post("/").status_code == 405


def test_unknown_paths_are_404_with_a_message(client: httpx.Client) -> None:
    response = client.get("/v2/models")
    assert response.status_code == 404
    assert "/v2/models" in response.json()["message"]


def test_swagger_document(client: httpx.Client) -> None:
    response = client.get("/swagger.json")
    assert response.status_code == 200
    document = response.json()
    assert document["swagger"] == "2.0"
    assert "/score" in document["paths"]


def test_cors_origin_is_allowed_when_configured(client: httpx.Client) -> None:
    allowed = client.post("/score", json={}, headers={"origin": "http://example.com"})
    assert allowed.headers["access-control-allow-origin"] == "http://example.com"
    other = client.post("/score", json={}, headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_run_raising_is_a_500_naming_the_exception(client: httpx.Client) -> None:
    response = client.post("/score", json={"fail": True})
    assert response.status_code == 500
    assert response.headers["x-ms-run-function-failed"] == "True"
    message = response.json()["message"]
    assert "ValueError" in message and "the input asked to fail" in message
    assert client.post("/score", json={"after": 1}).status_code == 200


def test_scoring_timeout_is_a_500_and_the_worker_goes_on(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.post("/score", json={"sleep": 5})
    assert time.monotonic() - started < 4.5
    assert response.status_code == 500
    assert response.json()["message"] == f"Scoring timeout after {TIMEOUT_MS} ms"
    for _ in range(4):  # both workers still answer, the stuck one included
        assert client.post("/score", json={"after": 2}).status_code == 200


def test_non_utf8_body_is_a_400(client: httpx.Client) -> None:
    response = client.post("/score", content=b"\xff\xfe\xfa")
    assert response.status_code == 400
    assert "UTF-8" in response.json()["message"]


def test_workers_share_the_port(json_server: ScoreServer) -> None:
    pids = set()
    for _ in range(40):  # a fresh connection each time, so the kernel picks a worker
        with httpx.Client(base_url=json_server.base_url, timeout=30) as fresh:
            pids.add(fresh.post("/score", json={}).json()["pid"])
        if len(pids) > 1:
            break
    assert len(pids) == 2, pids


def test_a_dead_worker_is_replaced(json_server: ScoreServer) -> None:
    with httpx.Client(base_url=json_server.base_url, timeout=30) as doomed:
        victim = doomed.post("/score", json={}).json()["pid"]
        died = doomed.post("/score", json={"die": True})
        assert died.status_code == 502, died.text  # the supervisor answers for the worker
        assert "ended while handling the request" in died.json()["message"]
    deadline = time.monotonic() + 30
    pids: set[int] = set()
    while time.monotonic() < deadline and len(pids) < 2:
        with httpx.Client(base_url=json_server.base_url, timeout=30) as fresh:
            response = fresh.post("/score", json={})
        assert response.status_code == 200
        pids.add(response.json()["pid"])
    assert victim not in pids
    assert len(pids) == 2, "the dead worker was not replaced"
    assert "starting another" in json_server.stderr


# --------------------------------------------------------------------------- raw, async run


@pytest.fixture(scope="module")
def raw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoreServer]:
    script = write_script(tmp_path_factory.mktemp("raw"), RAW_ASYNC_SCRIPT)
    env = {"SCORING_TIMEOUT_MS": "1000", "SERVICE_PATH_PREFIX": "api/v1"}
    server = ScoreServer(["--entry-script", str(script)], env)
    yield server.wait_started()
    server.stop()


def test_rawhttp_async_run_gets_the_request(raw_server: ScoreServer) -> None:
    with httpx.Client(base_url=raw_server.base_url, timeout=30) as http:
        response = http.post("/score", content=b"\x00\x01abc")
        assert response.status_code == 200
        assert response.content == b"cba\x01\x00"
        assert response.headers["content-type"] == "application/octet-stream"
        got = http.get("/score", params={"k": "v"})
        assert got.json() == {"args": {"k": "v"}}


def test_service_path_prefix(raw_server: ScoreServer) -> None:
    with httpx.Client(base_url=raw_server.base_url, timeout=30) as http:
        assert http.get("/api/v1/").text == "Healthy"
        assert http.post("/api/v1/score", content=b"ab").content == b"ba"
        assert "/api/v1/score" in http.get("/api/v1/swagger.json").json()["paths"]


def test_amlresponse_status_and_headers_pass_through(raw_server: ScoreServer) -> None:
    with httpx.Client(base_url=raw_server.base_url, timeout=30) as http:
        response = http.post("/score", content=b"teapot")
    assert response.status_code == 418
    assert response.text == "short and stout"
    assert response.headers["x-kind"] == "teapot"
    assert "x-request-id" in response.headers


def test_async_run_timeout(raw_server: ScoreServer) -> None:
    with httpx.Client(base_url=raw_server.base_url, timeout=30) as http:
        response = http.post("/score", content=b"slow")
        assert response.status_code == 500
        assert response.json()["message"] == "Scoring timeout after 1000 ms"
        assert http.post("/score", content=b"ok").status_code == 200


# --------------------------------------------------------------------------- start-up failures


@pytest.mark.parametrize(
    ("source", "expected"),
    [(INIT_FAILS_SCRIPT, "the model file is missing"), (NO_RUN_SCRIPT, "no run() function")],
    ids=["init-raises", "no-run"],
)
def test_a_script_that_cannot_start_exits_3(
    tmp_path: Path, model_dir: Path, source: str, expected: str
) -> None:
    script = write_script(tmp_path, source)
    server = ScoreServer(["--entry_script", str(script), "--model_dir", str(model_dir)])
    assert server.wait_exited() == 3
    log = server.stderr
    assert expected in log
    assert "weights.bin" in log  # the model folder's tree
    if source is INIT_FAILS_SCRIPT:
        assert "Traceback" in log


def test_a_missing_script_is_a_usage_error(tmp_path: Path) -> None:
    server = ScoreServer(["--entry_script", str(tmp_path / "absent.py")])
    assert server.wait_exited() == 2
    assert "does not exist" in server.stderr


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc")
def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    script = write_script(tmp_path, JSON_SCRIPT)
    server = ScoreServer(["--entry_script", str(script), "--worker_count", "2"]).wait_started()
    pid = server.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as handle:
        workers = [int(p) for p in handle.read().split()]
    assert len(workers) == 2
    server.proc.kill()
    server.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()]
    for orphan in alive:  # do not leave them behind if the test fails
        os.kill(orphan, signal.SIGKILL)
    assert not alive, "workers outlived their supervisor"
