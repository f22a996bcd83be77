"""Prometheus metrics, Server-Timing headers, the access log and verbose logging, through a
real server and real clients."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import (
    TidalServer,
    binary_body,
    error_message,
    http_client,
    running_server,
    tidal_command,
    tidal_env,
)
from .models import save_model, simple_model, write_text
from .scheduling_models import SLOW_ITERATIONS_PER_MS, slow_fp32

TIMING_RE = re.compile(
    r"^queue;dur=(\d+\.\d{3}), compute;dur=(\d+\.\d{3}), total;dur=(\d+\.\d{3})$"
)
BUCKETS = "0.0005,0.005,0.05,0.5"


def build_metrics_repository(repo: Path) -> Path:
    simple_model(repo, "scaler")
    # one instance, so a second slow request waits (pending) behind the first
    save_model(repo / "slow" / "1" / "model.onnx", slow_fp32())
    write_text(repo / "slow" / "config.pbtxt", 'name: "slow"\nmax_batch_size: 8\n')
    return repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_metrics_repository(tmp_path_factory.mktemp("metrics_repo"))


@pytest.fixture(scope="module")
def access_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "access.jsonl"


@pytest.fixture(scope="module")
def metrics_server(repo: Path, access_log: Path) -> Iterator[TidalServer]:
    flags = ["--metrics-latency-buckets", BUCKETS, "--access-log", str(access_log)]
    with running_server(repo, flags=[*flags, "--log-verbose", "1"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(metrics_server: TidalServer) -> Iterator[httpx.Client]:
    with http_client(metrics_server) as http:
        yield http


def scrape(server: TidalServer) -> tuple[str, dict]:
    """The /metrics text and its samples as {(name, sorted labels): value}."""
    response = httpx.get(server.metrics_url, timeout=10.0)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            # the parser names counter samples "<name>_total"; Triton's have no suffix
            name = sample.name.removesuffix("_total")
            samples[(name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, samples


def at(model: str, **labels: str) -> tuple:
    return tuple(sorted({"model": model, "version": "1", **labels}.items()))


def _scaler_body(rows: int = 1, width: int = 4) -> dict:
    return {
        "inputs": [
            {"name": "X", "shape": [rows, width], "datatype": "FP32", "data": [1.0] * rows * width}
        ]
    }


def _slow_body(milliseconds: int) -> dict:
    return {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1.0] * 4},
            {
                "name": "DELAY",
                "shape": [1, 1],
                "datatype": "INT64",
                "data": [milliseconds * SLOW_ITERATIONS_PER_MS],
            },
        ]
    }


def test_metrics_service_is_announced_on_the_http_address(metrics_server):
    assert re.search(r"Started Metrics Service at 127\.0\.0\.1:\d+", metrics_server.stderr)


def test_triton_metric_families_are_served(metrics_server):
    text, samples = scrape(metrics_server)
    for name in (
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
    ):
        assert f"# TYPE {name} counter\n" in text
        assert (name, at("scaler")) in samples or name == "nv_inference_request_failure"
    assert "# TYPE nv_inference_pending_request_count gauge\n" in text
    assert ("nv_inference_pending_request_count", at("slow")) in samples
    for family in ("process_cpu_seconds", "process_resident_memory_bytes", "nv_cpu_utilization"):
        assert any(name == family for name, _ in samples)
    assert samples[("process_resident_memory_bytes", ())] > 10_000_000


def test_counters_move_after_success_and_failure(metrics_server, client):
    _, before = scrape(metrics_server)
    for _ in range(2):
        assert client.post("/v2/models/scaler/infer", json=_scaler_body(rows=3)).status_code == 200
    error_message(client.post("/v2/models/scaler/infer", json=_scaler_body(width=3)), 400)
    _, after = scrape(metrics_server)

    def moved(name: str, **labels: str) -> float:
        key = (name, at("scaler", **labels))
        return after[key] - before[key]

    assert moved("nv_inference_request_success") == 2
    assert moved("nv_inference_count") == 6
    assert moved("nv_inference_exec_count") == 2
    assert moved("nv_inference_request_failure", reason="OTHER") == 1
    assert moved("nv_inference_request_failure", reason="BACKEND") == 0
    assert moved("nv_inference_request_duration_us") > 0
    assert moved("nv_inference_compute_infer_duration_us") > 0
    assert moved("tidal_inference_request_duration_seconds_count") == 2
    assert moved("tidal_inference_batch_size_bucket", le="4") == 2
    assert moved("tidal_inference_batch_size_sum") == 6


def test_latency_histograms_use_the_configured_buckets(metrics_server, client):
    assert client.post("/v2/models/scaler/infer", json=_scaler_body()).status_code == 200
    _, samples = scrape(metrics_server)
    for phase in ("request", "queue", "compute_infer"):
        name = f"tidal_inference_{phase}_duration_seconds_bucket"
        bounds = sorted(
            dict(labels)["le"]
            for metric, labels in samples
            if metric == name and dict(labels)["model"] == "scaler"
        )
        assert bounds == sorted([*BUCKETS.split(","), "+Inf"]), phase
        total = samples[(name, at("scaler", le="+Inf"))]
        count = samples[(f"tidal_inference_{phase}_duration_seconds_count", at("scaler"))]
        assert total == count >= 1


def test_pending_requests_are_counted_while_they_wait(metrics_server, client):
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(client.post, "/v2/models/slow/infer", json=_slow_body(700))
        time.sleep(0.15)  # the first holds the only instance
        second = pool.submit(client.post, "/v2/models/slow/infer", json=_slow_body(1))
        time.sleep(0.15)
        _, during = scrape(metrics_server)
        assert first.result().status_code == 200 and second.result().status_code == 200
    assert during[("nv_inference_pending_request_count", at("slow"))] == 1
    _, after = scrape(metrics_server)
    assert after[("nv_inference_pending_request_count", at("slow"))] == 0
    assert after[("nv_inference_queue_duration_us", at("slow"))] > 300_000


def test_inference_responses_carry_server_timing(metrics_server, client):
    response = client.post("/v2/models/slow/infer", json=_slow_body(50))
    assert response.status_code == 200
    match = TIMING_RE.match(response.headers["server-timing"])
    assert match, response.headers["server-timing"]
    queue, compute, total = (float(v) for v in match.groups())
    assert compute >= 20  # milliseconds of model execution
    assert total >= queue + compute


def test_binary_and_failed_inference_carry_server_timing_too(client):
    header = {
        "inputs": [
            {
                "name": "X",
                "shape": [1, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 16},
            }
        ],
        "outputs": [{"name": "Y", "parameters": {"binary_data": True}}],
    }
    body, headers = binary_body(header, [np.ones((1, 4), np.float32).tobytes()])
    binary = client.post("/v2/models/scaler/infer", content=body, headers=headers)
    assert binary.status_code == 200 and "inference-header-content-length" in binary.headers
    assert TIMING_RE.match(binary.headers["server-timing"])
    failed = client.post("/v2/models/scaler/infer", json=_scaler_body(width=3))
    assert failed.status_code == 400
    assert TIMING_RE.match(failed.headers["server-timing"])


def test_other_responses_carry_the_total_time(client):
    for path in ("/v2/health/ready", "/v2/models/scaler", "/v2/models/nope"):
        assert re.fullmatch(r"total;dur=\d+\.\d{3}", client.get(path).headers["server-timing"])


def test_access_log_has_a_json_line_per_request(metrics_server, client, access_log):
    client.post("/v2/models/scaler/infer", json=_scaler_body(rows=2))
    client.get("/v2/models/scaler/versions/1/ready")
    # Triton 2.51 answers statistics of a model it does not serve with 400.
    error_message(client.get("/v2/models/nope/stats"), 400)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in access_log.read_text().splitlines()]
        if len(lines) >= 3 and lines[-1]["path"] == "/v2/models/nope/stats":
            break
        time.sleep(0.05)
    infer, ready, missing = lines[-3:]
    assert set(infer) == {
        "time",
        "method",
        "path",
        "status",
        "duration_ms",
        "model",
        "version",
        "bytes_in",
        "bytes_out",
    }
    assert (infer["method"], infer["path"], infer["status"], infer["model"]) == (
        "POST",
        "/v2/models/scaler/infer",
        200,
        "scaler",
    )
    assert infer["bytes_in"] > 50 and infer["bytes_out"] > 50 and infer["duration_ms"] > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", infer["time"])
    assert (ready["version"], ready["status"]) == (1, 200)
    assert (missing["model"], missing["status"]) == ("nope", 400)


def test_verbose_logging_logs_each_request(metrics_server, client):
    client.get("/v2/models/scaler/config")
    deadline = time.monotonic() + 5
    while "GET /v2/models/scaler/config -> 200" not in metrics_server.stderr:
        assert time.monotonic() < deadline, metrics_server.stderr[-2000:]
        time.sleep(0.05)


def test_metrics_endpoint_refuses_other_paths_and_methods(metrics_server):
    base = metrics_server.metrics_url.removesuffix("/metrics")
    assert error_message(httpx.get(f"{base}/v2/health/ready"), 404)
    assert error_message(httpx.post(f"{base}/metrics"), 405)


# -- flags ----------------------------------------------------------------------------------


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    simple_model(tmp_path, "scaler")
    return tmp_path


def test_metrics_can_be_turned_off(start_server, tiny_repo):
    server = start_server(tiny_repo, flags=["--allow-metrics=false"])
    assert server.metrics_port is None
    assert "Metrics Service" not in server.stderr
    with httpx.Client(base_url=server.base_url) as client:
        assert client.post("/v2/models/scaler/infer", json=_scaler_body()).status_code == 200
        stats = client.get("/v2/models/scaler/stats").json()["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] == 1


def test_cpu_metrics_can_be_turned_off(start_server, tiny_repo):
    server = start_server(
        tiny_repo, flags=["--allow-cpu-metrics=false", "--metrics-latency-buckets="]
    )
    text, _ = scrape(server)
    assert "nv_inference_request_success" in text
    assert "process_cpu" not in text and "nv_cpu" not in text
    assert "duration_seconds" not in text  # no buckets: no latency histograms


def test_a_bad_bucket_list_stops_start_up_with_the_reason(start_server, tiny_repo):
    server = start_server(tiny_repo, flags=["--metrics-latency-buckets=1,x"], wait=False)
    assert server.wait_exited() == 2
    assert "latency bucket 'x' is not a number" in server.stderr


def test_a_taken_metrics_port_stops_start_up(start_server, tiny_repo):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        server = start_server(tiny_repo, flags=["--metrics-port", str(port)], wait=False)
        assert server.wait_exited() == 1
    assert f"cannot listen on 127.0.0.1:{port}" in server.stderr


def test_metrics_address_can_differ_from_the_http_address(start_server, tiny_repo):
    server = start_server(tiny_repo, flags=["--metrics-address", "127.0.0.2"])
    assert re.search(r"Started Metrics Service at 127\.0\.0\.2:\d+", server.stderr)
    response = httpx.get(f"http://127.0.0.2:{server.metrics_port}/metrics", timeout=10.0)
    assert response.status_code == 200


def test_access_log_to_stdout(tiny_repo):
    proc = subprocess.Popen(
        tidal_command(
            "serve",
            "--model-repository",
            str(tiny_repo),
            "--http-port",
            "0",
            "--http-address",
            "127.0.0.1",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
            "--access-log",
            "-",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=tidal_env(),
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        port = None
        for line in proc.stderr:
            found = re.search(r"Started HTTPService at [0-9.]+:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None
        assert httpx.get(f"http://127.0.0.1:{port}/v2/health/live").status_code == 200
        line = json.loads(proc.stdout.readline())
        assert (line["path"], line["status"]) == ("/v2/health/live", 200)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
