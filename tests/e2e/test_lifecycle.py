"""Lifecycle and limits through a real server: liveness while models load, SIGTERM with
requests in flight, the exit timeout, the request size limit, JSON nesting and shape guards."""

from __future__ import annotations

import gzip
import json
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from .conftest import STOP_TIMEOUT_S, TidalServer, error_message, http_client, running_server
from .control_models import delay_file, scale_body, scale_model, slow_body, slow_model

LISTENING_RE = re.compile(r"HTTP listening at ([0-9.]+):(\d+)")
SLOW_WARMUP = """model_warmup [ { name: "wait" batch_size: 1 inputs [
  { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } },
  { key: "DELAY" value: { data_type: TYPE_INT64 dims: [ 1 ] input_data_file: "d" } }
] } ]
"""


def wait_for_line(proc: TidalServer, pattern: re.Pattern, timeout: float = 30.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = pattern.search(proc.stderr)
        if match:
            return match
        if proc.proc.poll() is not None:
            pytest.fail(f"the server exited ({proc.proc.returncode}):\n{proc.stderr}")
        time.sleep(0.02)
    pytest.fail(f"no line matching {pattern.pattern} within {timeout:.0f} s:\n{proc.stderr}")


def wait_exit(proc: TidalServer, timeout: float = STOP_TIMEOUT_S) -> int:
    try:
        return proc.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit within {timeout:.0f} s:\n{proc.stderr}")


class SlowRequests:
    """``count`` slow requests sent on their own connections; their answers land in order."""

    def __init__(self, base_url: str, model: str, ms: int, count: int) -> None:
        self.answers: list[httpx.Response | Exception] = []
        self._threads = [
            threading.Thread(target=self._send, args=(base_url, model, ms)) for _ in range(count)
        ]

    def _send(self, base_url: str, model: str, ms: int) -> None:
        try:
            with httpx.Client(base_url=base_url, timeout=60.0) as client:
                self.answers.append(client.post(f"/v2/models/{model}/infer", json=slow_body(ms)))
        except httpx.HTTPError as exc:
            self.answers.append(exc)

    def start(self) -> SlowRequests:
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> list[httpx.Response | Exception]:
        for thread in self._threads:
            thread.join(60)
        return self.answers


def _slow_repo(root: Path) -> Path:
    slow_model(root, "slow", config_extra="instance_group [ { count: 2 } ]\n")
    scale_model(root, "quick", 2.0)
    return root


# ------------------------------------------------------------------------------ start-up


@pytest.mark.slow
def test_live_but_not_ready_while_models_load(tmp_path, start_server):
    folder = slow_model(tmp_path, "warming", config_extra=SLOW_WARMUP)
    (folder / "warmup").mkdir()
    (folder / "warmup" / "d").write_bytes(delay_file(2500))
    proc = start_server(tmp_path, wait=False)
    host, port = wait_for_line(proc, LISTENING_RE).groups()
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 400
        listed = client.post("/v2/repository/index").json()
        assert listed == [{"name": "warming", "state": "LOADING"}]
        assert client.get("/v2/models/warming/ready").status_code == 400
        response = client.post("/v2/repository/models/warming/load")
        assert response.status_code == 503  # mode none refuses, whatever the state
        proc.wait_started()
        assert client.get("/v2/health/ready").status_code == 200
        assert client.get("/v2/models/warming/ready").status_code == 200


def test_stop_signal_while_models_load(tmp_path, start_server):
    folder = slow_model(tmp_path, "warming", config_extra=SLOW_WARMUP)
    (folder / "warmup").mkdir()
    (folder / "warmup" / "d").write_bytes(delay_file(1500))
    proc = start_server(tmp_path, wait=False)
    wait_for_line(proc, LISTENING_RE)
    proc.proc.send_signal(signal.SIGTERM)
    assert wait_exit(proc) == 0
    assert "stop signal while the models load" in proc.stderr


# ------------------------------------------------------------------------------- SIGTERM


def test_sigterm_answers_every_accepted_request(tmp_path, start_server):
    proc = start_server(_slow_repo(tmp_path))
    slow = SlowRequests(proc.base_url, "slow", ms=1500, count=2).start()
    with httpx.Client(base_url=proc.base_url, timeout=30) as client:
        time.sleep(0.5)  # both accepted and running
        proc.proc.send_signal(signal.SIGTERM)
        wait_for_line(proc, re.compile("shutting down: finishing accepted requests"))
        # Readiness false at once, liveness still true, new requests refused: UNAVAILABLE.
        assert client.get("/v2/health/ready").status_code == 400
        assert client.get("/v2/health/live").status_code == 200
        response = client.post("/v2/models/quick/infer", json=scale_body([1.0] * 4))
        assert error_message(response, 503) == "the server is shutting down"
        assert proc.proc.poll() is None, "exited before the accepted requests finished"
    answers = slow.join()
    assert [getattr(a, "status_code", a) for a in answers] == [200, 200]
    assert wait_exit(proc) == 0
    assert "stopped" in proc.stderr


@pytest.mark.slow
def test_exit_timeout_cancels_what_is_left_with_an_error(tmp_path, start_server):
    proc = start_server(_slow_repo(tmp_path), flags=["--exit-timeout-secs", "1"])
    slow = SlowRequests(proc.base_url, "slow", ms=3500, count=1).start()
    time.sleep(0.5)
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    (answer,) = slow.join()
    answered_after = time.monotonic() - started
    assert isinstance(answer, httpx.Response), answer
    message = error_message(answer, 503)
    assert "did not finish within --exit-timeout-secs (1 s) and was cancelled" in message
    assert answered_after < 2.5, f"answered {answered_after:.1f} s after SIGTERM"
    assert wait_exit(proc) == 1
    assert "exit timeout (1 s): cancelled 1 request(s)" in proc.stderr


def test_sigterm_with_nothing_in_flight_exits_at_once(tmp_path, start_server):
    proc = start_server(_slow_repo(tmp_path))
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGINT)
    assert wait_exit(proc) == 0
    assert time.monotonic() - started < 5


# -------------------------------------------------------------------------------- limits


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("limits_repo")
    scale_model(repo, "quick", 2.0)
    with running_server(repo, flags=["--http-max-input-size", "4096"]) as proc:
        yield proc


@pytest.fixture
def limited_client(limited):
    with http_client(limited) as client:
        yield client


def _padded(size: int) -> bytes:
    """A valid infer body for "quick", padded with spaces to ``size`` bytes."""
    body = json.dumps(scale_body([1.0, 2.0, 3.0, 4.0])).encode()
    return body + b" " * (size - len(body))


def test_body_within_the_limit_is_served(limited_client):
    response = limited_client.post("/v2/models/quick/infer", content=_padded(4096))
    assert response.status_code == 200, response.text


def test_body_over_the_limit_is_a_clear_400(limited_client):
    response = limited_client.post("/v2/models/quick/infer", content=_padded(4097))
    message = error_message(response, 400)
    assert "exceeds the maximum allowed input size of 4096 bytes" in message
    assert "--http-max-input-size" in message
    assert limited_client.get("/v2/health/ready").status_code == 200


def test_decompressed_size_is_checked_too(limited_client):
    small = gzip.compress(_padded(100_000))
    assert len(small) < 4096
    response = limited_client.post(
        "/v2/models/quick/infer", content=small, headers={"Content-Encoding": "gzip"}
    )
    message = error_message(response, 400)
    assert "inflates to more than the maximum allowed input size of 4096 bytes" in message
    fits = gzip.compress(_padded(4000))
    response = limited_client.post(
        "/v2/models/quick/infer", content=fits, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text


def test_deep_json_nesting_is_refused_and_the_server_lives(http, server):
    depth = 500_000  # orjson would recurse this deep and crash the process
    data = b"[" * depth + b"1" + b"]" * depth
    body = b'{"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "data": ' + data
    body += b"}]}"
    response = http.post("/v2/models/identity_fp32/infer", content=body)
    assert error_message(response, 400) == "JSON nesting depth exceeds maximum allowed (100)"
    head = b'{"inputs": [{"name": "INPUT0", "shape": [1], "datatype": "FP32", "parameters": '
    head += b'{"x": ' + b"[" * 200 + b"]" * 200 + b', "binary_data_size": 4}}]}'
    response = http.post(
        "/v2/models/identity_fp32/infer",
        content=head + b"\0\0\0\0",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert error_message(response, 400) == "JSON nesting depth exceeds maximum allowed (100)"
    assert http.get("/v2/health/ready").status_code == 200
    assert server.proc.poll() is None


def test_brackets_inside_strings_do_not_count_as_nesting(http):
    text = "[" * 300
    body = {
        "id": text,
        "inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
    }
    response = http.post("/v2/models/identity_fp32/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == text


@pytest.mark.parametrize(
    "shape", [[4294967296, 4294967296], [9223372036854775807, 2], [2**62, 2**62, 2**62]]
)
def test_shapes_that_overflow_are_refused(http, shape):
    body = {"inputs": [{"name": "INPUT0", "shape": shape, "datatype": "FP32", "data": [1.0]}]}
    assert error_message(http.post("/v2/models/identity_fp32/infer", json=body), 400)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "INPUT0",
                    "shape": shape,
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    response = http.post(
        "/v2/models/identity_fp32/infer",
        content=head + b"\0" * 16,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert error_message(response, 400)
    assert http.get("/v2/health/ready").status_code == 200
