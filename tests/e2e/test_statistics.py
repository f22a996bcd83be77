"""The statistics extension through a real server: Triton's shape, for all models, one model
and one version, moving on success and on every kind of failure."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from .conftest import (
    TidalServer,
    error_message,
    http_client,
    model_stats,
    running_server,
    triton_client,
)
from .models import simple_model, versioned_model
from .scheduling_models import build_scheduling_repository
from .waiting import pending_requests, wait_until

DURATION_KEYS = {"count", "ns"}
INFERENCE_STATS_KEYS = {
    "success",
    "fail",
    "queue",
    "compute_input",
    "compute_infer",
    "compute_output",
    "cache_hit",
    "cache_miss",
}
MODEL_STAT_KEYS = {
    "name",
    "version",
    "last_inference",
    "inference_count",
    "execution_count",
    "inference_stats",
    "response_stats",
    "batch_stats",
    "memory_usage",
}


def build_statistics_repository(repo: Path) -> Path:
    build_scheduling_repository(repo)
    simple_model(repo, "simple_stats")
    versioned_model(repo, "two_versions", [1, 2], "{ all {} }")
    return repo


@pytest.fixture(scope="module")
def stats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidalServer]:
    repo = build_statistics_repository(tmp_path_factory.mktemp("stats_repo"))
    with running_server(repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(stats_server: TidalServer) -> Iterator[httpx.Client]:
    with http_client(stats_server, connections=16) as http:
        yield http


def _simple_body(rows: int) -> dict:
    return {
        "inputs": [{"name": "X", "shape": [rows, 4], "datatype": "FP32", "data": [1.0] * 4 * rows}]
    }


def _identity_body() -> dict:
    return {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1.0] * 4}]}


def _delta(after: dict, before: dict, *path: str) -> int:
    for key in path:
        after, before = after[key], before[key]
    return after - before


def test_statistics_extension_is_advertised(client):
    assert "statistics" in client.get("/v2").json()["extensions"]


def test_every_loaded_version_is_listed_in_triton_shape(client):
    response = client.get("/v2/models/stats")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    entries = response.json()["model_stats"]
    listed = {(e["name"], e["version"]) for e in entries}
    assert {("simple_stats", "1"), ("two_versions", "1"), ("two_versions", "2")} <= listed
    for entry in entries:
        assert set(entry) == MODEL_STAT_KEYS
        assert set(entry["inference_stats"]) == INFERENCE_STATS_KEYS
        for duration in entry["inference_stats"].values():
            assert set(duration) == DURATION_KEYS
            assert all(type(v) is int and v >= 0 for v in duration.values())
        for batch in entry["batch_stats"]:
            assert set(batch) == {"batch_size", "compute_input", "compute_infer", "compute_output"}


def test_one_model_lists_its_versions_and_one_version_itself(client):
    versions = client.get("/v2/models/two_versions/stats").json()["model_stats"]
    assert [(e["name"], e["version"]) for e in versions] == [
        ("two_versions", "1"),
        ("two_versions", "2"),
    ]
    assert model_stats(client, "two_versions", 2)["version"] == "2"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        # Triton 2.51: 400, "requested model 'm' is not available" / "requested model
        # version is not available for model 'm'" (and INVALID_ARGUMENT over gRPC)
        ("/v2/models/no_such_model/stats", 400),
        ("/v2/models/two_versions/versions/7/stats", 400),
        ("/v2/models/two_versions/versions/x/stats", 400),
    ],
)
def test_unknown_models_and_versions_are_errors(client, path, status):
    assert error_message(client.get(path), status)


def test_successful_requests_move_every_counter(client):
    before = model_stats(client, "simple_stats")
    started_ms = time.time() * 1000
    for _ in range(3):
        response = client.post("/v2/models/simple_stats/infer", json=_simple_body(2))
        assert response.status_code == 200, response.text
    after = model_stats(client, "simple_stats")
    assert _delta(after, before, "inference_stats", "success", "count") == 3
    assert _delta(after, before, "inference_count") == 6  # samples
    assert _delta(after, before, "execution_count") == 3
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert _delta(after, before, "inference_stats", phase, "count") == 3
    compute = {
        phase: _delta(after, before, "inference_stats", phase, "ns")
        for phase in ("compute_input", "compute_infer", "compute_output")
    }
    assert all(ns > 0 for ns in compute.values()), compute  # ONNX Runtime: each phase timed
    assert _delta(after, before, "inference_stats", "success", "ns") >= sum(compute.values())
    assert _delta(after, before, "inference_stats", "fail", "count") == 0
    batch_two = {b["batch_size"]: b for b in after["batch_stats"]}[2]
    assert batch_two["compute_infer"]["count"] >= 3
    assert started_ms - 1000 <= after["last_inference"] <= time.time() * 1000 + 1000


def test_a_request_that_does_not_fit_the_model_is_a_failure(client):
    before = model_stats(client, "simple_stats")
    bad = {"inputs": [{"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1.0] * 3}]}
    error_message(client.post("/v2/models/simple_stats/infer", json=bad), 400)
    after = model_stats(client, "simple_stats")
    assert _delta(after, before, "inference_stats", "fail", "count") == 1
    assert _delta(after, before, "inference_stats", "success", "count") == 0
    assert _delta(after, before, "execution_count") == 0


def test_a_model_error_is_a_failure_and_runs_no_counted_inference(client):
    before = model_stats(client, "batch_errors")
    bad = {
        "inputs": [
            {"name": "DATA", "shape": [1, 4], "datatype": "FP32", "data": [1.0] * 4},
            {"name": "INDEX", "shape": [1, 1], "datatype": "INT64", "data": [99]},
        ]
    }
    error_message(client.post("/v2/models/batch_errors/infer", json=bad), 500)
    after = model_stats(client, "batch_errors")
    assert _delta(after, before, "inference_stats", "fail", "count") == 1
    assert _delta(after, before, "inference_count") == 0


def test_a_request_refused_by_a_full_queue_is_a_failure(client, stats_server):
    before = model_stats(client, "queue_limit")
    with ThreadPoolExecutor(max_workers=2) as pool:
        waiting = [
            pool.submit(client.post, "/v2/models/queue_limit/infer", json=_identity_body())
            for _ in range(2)
        ]
        wait_until(  # both wait out the model's 1.5 s batching delay
            lambda: pending_requests(stats_server.metrics_url, "queue_limit") == 2, "two queued"
        )
        error_message(client.post("/v2/models/queue_limit/infer", json=_identity_body()), 503)
        assert all(f.result().status_code == 200 for f in waiting)
    after = model_stats(client, "queue_limit")
    assert _delta(after, before, "inference_stats", "fail", "count") == 1
    assert _delta(after, before, "inference_stats", "success", "count") == 2
    assert _delta(after, before, "execution_count") == 1  # the two waited and ran together
    assert _delta(after, before, "inference_stats", "queue", "ns") > 2 * 1_000_000_000


def test_tritonclient_reads_the_statistics(stats_server, client):
    client.post("/v2/models/two_versions/versions/1/infer", json=_int_body())
    with triton_client(stats_server) as triton:
        stats = triton.get_inference_statistics("two_versions", "1")
    (entry,) = stats["model_stats"]
    assert entry["name"] == "two_versions" and entry["version"] == "1"
    assert entry["inference_stats"]["success"]["count"] >= 1


def _int_body() -> dict:
    return {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "INT32", "data": [1] * 4}]}


def test_statistics_of_one_version_do_not_move_with_the_other(client):
    before = model_stats(client, "two_versions", 2)
    response = client.post("/v2/models/two_versions/versions/1/infer", json=_int_body())
    assert np.array(response.json()["outputs"][0]["data"]).tolist() == [2, 2, 2, 2]
    assert model_stats(client, "two_versions", 2) == before
