"""Dynamic batching, queue policies, instance groups and cancellation, through a real server.

Batch formation is read back from the statistics endpoint (``batch_stats``), the way Triton
users check it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from .conftest import TidalServer, http_client, model_stats, running_server
from .scheduling_models import SLOW_ITERATIONS_PER_MS, build_scheduling_repository
from .waiting import pending_requests, wait_until


@pytest.fixture(scope="module")
def sched_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidalServer]:
    repo = build_scheduling_repository(tmp_path_factory.mktemp("sched_repo"))
    with running_server(repo) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(sched_server: TidalServer) -> Iterator[httpx.Client]:
    with http_client(sched_server, connections=32) as http:
        yield http


def _identity_body(values: np.ndarray, **parameters: object) -> dict:
    body: dict = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": list(values.shape),
                "datatype": "FP32",
                "data": values.ravel().tolist(),
            }
        ]
    }
    if parameters:
        body["parameters"] = parameters
    return body


def _slow_body(milliseconds: int, rows: int = 1) -> dict:
    steps = milliseconds * SLOW_ITERATIONS_PER_MS
    return {
        "inputs": [
            {"name": "INPUT0", "shape": [rows, 4], "datatype": "FP32", "data": [1.0] * 4 * rows},
            {"name": "DELAY", "shape": [rows, 1], "datatype": "INT64", "data": [steps] * rows},
        ]
    }


def _infer(client: httpx.Client, model: str, body: dict) -> httpx.Response:
    return client.post(f"/v2/models/{model}/infer", json=body)


def _concurrently(client: httpx.Client, model: str, bodies: list[dict]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(lambda body: _infer(client, model, body), bodies))


def _batch_counts(stats: dict) -> dict[int, int]:
    return {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}


def _output(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    return np.array(out["data"], dtype=np.float32).reshape(out["shape"])


def test_full_batch_is_sent_at_once_without_waiting_for_the_delay(client):
    rows = [np.full((1, 4), i, dtype=np.float32) for i in range(8)]
    started = time.monotonic()
    responses = _concurrently(client, "batch_delay", [_identity_body(r) for r in rows])
    elapsed = time.monotonic() - started
    for row, response in zip(rows, responses, strict=True):
        np.testing.assert_array_equal(_output(response), row)
    assert elapsed < 2.5, "a full batch must not wait for max_queue_delay (3 s)"
    stats = model_stats(client, "batch_delay")
    assert _batch_counts(stats) == {8: 1}
    assert stats["inference_count"] == 8
    assert stats["execution_count"] == 1


def test_requests_with_their_own_batch_dimension_are_combined_and_split_back(client):
    first = np.arange(12, dtype=np.float32).reshape(3, 4)
    second = -np.arange(20, dtype=np.float32).reshape(5, 4)
    before = _batch_counts(model_stats(client, "batch_delay")).get(8, 0)
    responses = _concurrently(
        client, "batch_delay", [_identity_body(first), _identity_body(second)]
    )
    np.testing.assert_array_equal(_output(responses[0]), first)
    np.testing.assert_array_equal(_output(responses[1]), second)
    assert _batch_counts(model_stats(client, "batch_delay")).get(8, 0) == before + 1


def test_preferred_batch_size_is_sent_at_once(client):
    started = time.monotonic()
    responses = _concurrently(
        client, "batch_preferred", [_identity_body(np.ones((1, 4), np.float32))] * 4
    )
    assert all(r.status_code == 200 for r in responses)
    assert time.monotonic() - started < 4.0, "a preferred size must not wait 5 s"
    assert _batch_counts(model_stats(client, "batch_preferred")) == {4: 1}


def test_requests_with_different_shapes_are_never_mixed(client):
    bodies = [_identity_body(np.full((1, 2 + i % 2), i, dtype=np.float32)) for i in range(6)]
    responses = _concurrently(client, "batch_shapes", bodies)
    for i, response in enumerate(responses):
        np.testing.assert_array_equal(_output(response), np.full((1, 2 + i % 2), i))
    stats = model_stats(client, "batch_shapes")
    assert stats["inference_count"] == 6
    assert stats["execution_count"] >= 2  # widths 2 and 3 cannot share an execution


def test_one_bad_request_does_not_fail_its_batch_neighbours(client):
    def body(index: int) -> dict:
        return {
            "inputs": [
                {"name": "DATA", "shape": [1, 4], "datatype": "FP32", "data": [10, 11, 12, 13]},
                {"name": "INDEX", "shape": [1, 1], "datatype": "INT64", "data": [index]},
            ]
        }

    responses = _concurrently(client, "batch_errors", [body(1), body(9), body(3)])
    assert _output(responses[0]).tolist() == [[11.0]]
    assert _output(responses[2]).tolist() == [[13.0]]
    assert responses[1].status_code == 500
    assert "batch_errors" in responses[1].json()["error"]


def test_full_queue_rejects_with_503(client, sched_server):
    body = _identity_body(np.ones((1, 4), np.float32))
    with ThreadPoolExecutor(max_workers=2) as pool:
        waiting = [pool.submit(_infer, client, "queue_limit", body) for _ in range(2)]
        wait_until(  # both are queued, waiting out the 1.5 s delay
            lambda: pending_requests(sched_server.metrics_url, "queue_limit") == 2, "two queued"
        )
        rejected = _infer(client, "queue_limit", body)
        assert rejected.status_code == 503
        assert "Exceeds maximum queue size" in rejected.json()["error"]
        assert all(f.result().status_code == 200 for f in waiting)


def test_request_past_its_queue_timeout_is_rejected(client):
    started = time.monotonic()
    response = _infer(client, "queue_timeout", _identity_body(np.ones((1, 4), np.float32)))
    assert response.status_code == 503
    assert "Request timeout expired" in response.json()["error"]
    assert time.monotonic() - started < 2.0  # rejected at 0.2 s, not after the 3 s delay


def test_request_timeout_parameter_overrides_when_allowed(client):
    values = np.ones((1, 4), np.float32)
    rejected = _infer(client, "queue_timeout_override", _identity_body(values, timeout=50_000))
    assert rejected.status_code == 503
    assert "Request timeout expired" in rejected.json()["error"]
    accepted = _infer(client, "queue_timeout_override", _identity_body(values))
    np.testing.assert_array_equal(_output(accepted), values)


def test_timeout_action_delay_still_runs_the_request(client):
    values = np.full((1, 4), 3.0, np.float32)
    response = _infer(client, "queue_timeout_delay", _identity_body(values))
    np.testing.assert_array_equal(_output(response), values)


def test_priority_outside_the_levels_is_invalid(client):
    response = _infer(client, "batch_delay", _identity_body(np.ones((2, 4)), priority=3))
    assert response.status_code == 400
    assert "priority" in response.json()["error"]


def test_instances_of_a_group_execute_concurrently(client):
    def fast_latency_behind_a_slow_request(model: str) -> float:
        with ThreadPoolExecutor(max_workers=1) as pool:
            slow = pool.submit(_infer, client, model, _slow_body(800))
            time.sleep(0.1)  # the slow request is running on one instance
            started = time.monotonic()
            fast = _infer(client, model, _slow_body(1))
            latency = time.monotonic() - started
            assert fast.status_code == 200 and slow.result().status_code == 200
        return latency

    # One instance: the fast request waits for the slow one. Two: it runs beside it.
    assert fast_latency_behind_a_slow_request("slow_one") > 0.4
    assert fast_latency_behind_a_slow_request("slow_two") < 0.4


@pytest.mark.parametrize("model", ["slow_one", "slow_batched"])
def test_request_of_a_disconnected_client_is_dropped_from_the_queue(client, sched_server, model):
    before = model_stats(client, model)["inference_count"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        busy = pool.submit(_infer, client, model, _slow_body(600))
        time.sleep(0.15)  # the slow request holds the only instance
        _send_and_disconnect(sched_server, model, _slow_body(1))
        assert busy.result().status_code == 200
    time.sleep(0.3)
    assert model_stats(client, model)["inference_count"] == before + 1


def _send_and_disconnect(server: TidalServer, model: str, body: dict) -> None:
    payload = httpx.Request("POST", "http://x/", json=body).read()
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode()
    host, port = server.url.split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head + payload)
        time.sleep(0.1)  # let the server read and queue it


def test_statistics_for_all_models_list_every_loaded_version(client):
    response = client.get("/v2/models/stats")
    assert response.status_code == 200
    names = {entry["name"] for entry in response.json()["model_stats"]}
    assert {"batch_delay", "slow_one", "queue_limit"} <= names
