"""The server side of the rollout contract that Kubernetes (and ``tidal service update``) rely
on, with real processes on loopback: liveness and readiness through a model load, SIGTERM
with requests in flight over HTTP and gRPC, ``--shutdown-delay-secs``, and a rolling
replacement of one server by another on a shared listening socket under a steady load.

``test_lifecycle.py`` holds the basic start-up and SIGTERM checks; these add what a rollout
needs on top. Run as a script to measure the rolling replacement (see docs/rollout.md)::

    python -m tests.e2e.test_rollout_contract --runs 5 [--delay 0 | --kill]
"""

from __future__ import annotations

import argparse
import calendar
import http.client
import json
import re
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from .conftest import TidalServer, error_message, serve_args
from .control_models import (
    SCALE_WIDTH,
    delay_file,
    scale_body,
    scale_model,
    slow_body,
    slow_model,
)
from .scheduling_models import SLOW_ITERATIONS_PER_MS
from .test_lifecycle import LISTENING_RE, SLOW_WARMUP, SlowRequests, wait_exit, wait_for_line

DELAY_OVER_RE = re.compile(r"shutdown delay over")
LOAD_MODEL = "work"
LOAD_PATH = f"/v2/models/{LOAD_MODEL}/infer"
POLL_SECONDS = 0.05


def _warming_model(root: Path, ms: int, name: str = "warming", extra: str = "") -> None:
    """The slow model, whose warm-up takes about ``ms`` ms: start-up loads slowly."""
    folder = slow_model(root, name, config_extra=extra + SLOW_WARMUP)
    (folder / "warmup").mkdir(exist_ok=True)
    (folder / "warmup" / "d").write_bytes(delay_file(ms))


def _slow_repo(root: Path) -> Path:
    slow_model(root, "slow", config_extra="instance_group [ { count: 4 } ]\n")
    scale_model(root, "quick", 2.0)
    return root


def _grpc_slow(url: str, ms: int, answers: list) -> None:
    """One slow request over gRPC (tritonclient); its output or its exception lands in
    ``answers``."""
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    delay = np.array([[ms * SLOW_ITERATIONS_PER_MS]], dtype=np.int64)
    inputs = [
        triton_grpc.InferInput("INPUT0", [1, 4], "FP32").set_data_from_numpy(data),
        triton_grpc.InferInput("DELAY", [1, 1], "INT64").set_data_from_numpy(delay),
    ]
    try:
        with triton_grpc.InferenceServerClient(url) as client:
            result = client.infer("slow", inputs, client_timeout=60)
            answers.append(result.as_numpy("OUTPUT0"))
    except Exception as exc:  # the test reports whatever went wrong
        answers.append(exc)


def _grpc_quick(client: triton_grpc.InferenceServerClient) -> np.ndarray:
    data = np.ones((1, SCALE_WIDTH), np.float32)
    tensor = triton_grpc.InferInput("X", [1, SCALE_WIDTH], "FP32").set_data_from_numpy(data)
    return client.infer("quick", [tensor], client_timeout=30).as_numpy("Y")


def _until_not_ready(client: httpx.Client, since: float, limit: float = 10.0) -> float:
    """Poll readiness until it is not 200; the seconds from ``since`` to that answer."""
    while time.monotonic() - since < limit:
        if client.get("/v2/health/ready").status_code != 200:
            return time.monotonic() - since
    pytest.fail(f"readiness still 200 {limit:.0f} s after SIGTERM")


def _request(conn: http.client.HTTPConnection, path: str) -> tuple[int, str | None]:
    """GET ``path`` on a kept-alive connection; (status, its ``connection`` header)."""
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status, response.getheader("connection")


# ------------------------------------------------------------------------------ start-up


@pytest.mark.slow
def test_liveness_never_fails_through_a_multi_second_load(tmp_path, start_server):
    """Polled every 50 ms from the first moment HTTP listens until after the models are
    loaded: liveness is 200 every time, readiness 400 until the load ends, then 200 for good.
    (test_lifecycle.py checks the endpoints once each while loading.)"""
    _warming_model(tmp_path, 2500)
    proc = start_server(tmp_path, wait=False)
    host, port = wait_for_line(proc, LISTENING_RE).groups()
    live: list[int] = []
    ready: list[int] = []
    became_ready_at = None
    with httpx.Client(base_url=f"http://{host}:{port}", timeout=30) as client:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live.append(client.get("/v2/health/live").status_code)
            ready.append(client.get("/v2/health/ready").status_code)
            if ready[-1] == 200 and became_ready_at is None:
                became_ready_at = time.monotonic()
            if became_ready_at is not None and time.monotonic() - became_ready_at > 0.5:
                break
            time.sleep(POLL_SECONDS)
    assert became_ready_at is not None, proc.stderr
    assert set(live) == {200}, live
    first_ok = ready.index(200)
    assert set(ready[:first_ok]) == {400}, ready
    assert set(ready[first_ok:]) == {200}, ready
    # 2.5 s of warm-up polled every 50 ms: many not-ready answers, none missed.
    assert first_ok >= 10, f"only {first_ok} polls saw the load"
    assert "Started HTTPService" in proc.stderr  # logged once ready, as Triton does


# ------------------------------------------------------------------------------- SIGTERM


@pytest.mark.slow
def test_sigterm_turns_readiness_false_at_once_and_answers_http_and_grpc(tmp_path, start_server):
    proc = start_server(_slow_repo(tmp_path))
    over_http = SlowRequests(proc.base_url, "slow", ms=1500, count=2).start()
    over_grpc: list = []
    grpc_threads = [
        threading.Thread(target=_grpc_slow, args=(proc.grpc_url, 1500, over_grpc)) for _ in range(2)
    ]
    for thread in grpc_threads:
        thread.start()
    with httpx.Client(base_url=proc.base_url, timeout=30) as client:
        assert client.get("/v2/health/ready").status_code == 200
        time.sleep(0.5)  # all four accepted and running
        sent = time.monotonic()
        proc.proc.send_signal(signal.SIGTERM)
        not_ready_after = _until_not_ready(client, sent)
        assert client.get("/v2/health/live").status_code == 200
        assert proc.proc.poll() is None, "exited before the accepted requests finished"
    # "At once": the next readiness poll after the signal is delivered already says no.
    assert not_ready_after < 0.5, f"readiness still 200 {not_ready_after * 1000:.0f} ms after"
    for thread in grpc_threads:
        thread.join(60)
    answers = over_http.join()
    assert [getattr(a, "status_code", a) for a in answers] == [200, 200]
    assert len(over_grpc) == 2
    for answer in over_grpc:
        assert isinstance(answer, np.ndarray), answer
        assert answer.tolist() == [[0.0, 1.0, 2.0, 3.0]]
    assert wait_exit(proc) == 0


@pytest.mark.slow
def test_shutdown_delay_serves_then_refuses(tmp_path, start_server):
    """--shutdown-delay-secs on the server's own socket: during the delay readiness is false
    but requests (also on new connections) are served, each closing its connection; kept-alive
    idle connections are not cut; after the delay idle connections are closed and new requests
    are refused with 503 while the accepted ones finish."""
    proc = start_server(_slow_repo(tmp_path), flags=["--shutdown-delay-secs", "1.5"])
    # In flight across the whole delay, so the server is still draining after it.
    slow = SlowRequests(proc.base_url, "slow", ms=4000, count=1).start()
    busy = http.client.HTTPConnection(proc.host, proc.port, timeout=30)
    quiet = http.client.HTTPConnection(proc.host, proc.port, timeout=30)
    over_grpc = triton_grpc.InferenceServerClient(proc.grpc_url)
    try:
        assert _request(busy, "/v2/health/live") == (200, None)  # kept alive
        assert _request(quiet, "/v2/health/live") == (200, None)
        assert over_grpc.is_server_ready()
        with httpx.Client(base_url=proc.base_url, timeout=30) as client:
            time.sleep(0.3)
            sent = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            not_ready_after = _until_not_ready(client, sent)
            assert not_ready_after < 0.5, f"still ready {not_ready_after * 1000:.0f} ms after"
        wait_for_line(proc, re.compile(r"shutting down in 1\.5 s \(--shutdown-delay-secs\)"))
        # A connection idle since before the signal still works, and is told to close.
        assert _request(busy, "/v2/health/live") == (200, "close")
        # New connections are still accepted during the delay and served, one request each.
        with httpx.Client(base_url=proc.base_url, timeout=30) as client:
            response = client.post("/v2/models/quick/infer", json=scale_body([1.0] * SCALE_WIDTH))
            assert response.status_code == 200, response.text
            assert response.headers["connection"] == "close"
            assert response.json()["outputs"][0]["data"] == [2.0] * SCALE_WIDTH
        # gRPC alike: not ready, still serving.
        assert not over_grpc.is_server_ready()
        assert _grpc_quick(over_grpc).tolist() == [[2.0] * SCALE_WIDTH]
        wait_for_line(proc, DELAY_OVER_RE)
        # Idle throughout the delay: closed now (the client sees end-of-file, not a reset).
        quiet.sock.settimeout(5)
        assert quiet.sock.recv(1) == b""
        with httpx.Client(base_url=proc.base_url, timeout=30) as client:
            response = client.post("/v2/models/quick/infer", json=scale_body([1.0] * SCALE_WIDTH))
            assert error_message(response, 503) == "the server is shutting down"
        with pytest.raises(InferenceServerException, match="the server is shutting down"):
            _grpc_quick(over_grpc)
        assert proc.proc.poll() is None, "exited before the slow request finished"
    finally:
        busy.close()
        quiet.close()
        over_grpc.close()
    (answer,) = slow.join()
    assert getattr(answer, "status_code", answer) == 200
    assert wait_exit(proc) == 0
    assert "closed 1 idle HTTP connection(s)" in proc.stderr


def test_shutdown_delay_must_not_be_negative(tmp_path, start_server):
    proc = start_server(_slow_repo(tmp_path), flags=["--shutdown-delay-secs", "-1"], wait=False)
    assert proc.wait_exited() != 0
    assert "--shutdown-delay-secs must be a number of seconds, 0 or more" in proc.stderr


# ------------------------------------------------------------------- rolling replacement


@dataclass
class LoadResult:
    """What the client threads saw, and what each server's access log says it answered."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)
    served_by_old: int = 0
    served_by_new: int = 0
    old_exit: int | None = None
    old_after_signal: int = 0  # requests the old server answered after its stop signal


class _Load:
    """A few threads sending requests back to back to one address, counting successes and
    failures: httpx and tritonclient.http keeping their connections alive, and httpx with a
    new connection for each request. Each request runs the slow model for about ``work_ms``
    ms, so that some are in flight at any moment."""

    def __init__(self, host: str, port: int, threads: int, work_ms: int) -> None:
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._url = f"{host}:{port}"
        self._work_ms = work_ms
        kinds: list[Callable[[], None]] = [self._httpx, self._triton, self._fresh, self._triton]
        self._threads = [
            threading.Thread(target=kinds[i % len(kinds)], name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _record(self, error: str | None) -> None:
        with self._lock:
            if error is None:
                self.result.ok += 1
            else:
                self.result.failures.append(error)

    def _httpx(self, keep_alive: bool = True) -> None:
        body = slow_body(self._work_ms)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=int(keep_alive))
        with httpx.Client(base_url=f"http://{self._url}", timeout=30, limits=limits) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(LOAD_PATH, json=body)
                    ok = response.status_code == 200
                    error = None if ok else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    error = f"httpx {type(exc).__name__}: {exc}"
                self._record(error)
                time.sleep(0.002)

    def _fresh(self) -> None:
        self._httpx(keep_alive=False)

    def _triton(self) -> None:
        data = np.arange(4, dtype=np.float32).reshape(1, 4)
        delay = np.array([[self._work_ms * SLOW_ITERATIONS_PER_MS]], dtype=np.int64)
        with triton_http.InferenceServerClient(self._url, network_timeout=30) as client:
            while not self._stop.is_set():
                inputs = [
                    triton_http.InferInput("INPUT0", [1, 4], "FP32").set_data_from_numpy(data),
                    triton_http.InferInput("DELAY", [1, 1], "INT64").set_data_from_numpy(delay),
                ]
                try:
                    answer = client.infer(LOAD_MODEL, inputs).as_numpy("OUTPUT0")
                    error = None if answer.tolist() == data.tolist() else f"wrong {answer}"
                except Exception as exc:  # tritonclient raises many kinds
                    error = f"tritonclient {type(exc).__name__}: {exc}"
                self._record(error)
                time.sleep(0.002)


def _answered(access_log: Path, after: float | None = None) -> int:
    """Load requests answered 200 according to an access log (optionally after a time)."""
    count = 0
    for line in access_log.read_text().splitlines():
        record = json.loads(line)
        if record["path"] != LOAD_PATH or record["status"] != 200:
            continue
        if after is not None:
            stamp = time.strptime(record["time"][:19], "%Y-%m-%dT%H:%M:%S")
            seconds = calendar.timegm(stamp) + int(record["time"][20:23]) / 1000
            if seconds < after:
                continue
        count += 1
    return count


def rolling_replacement(
    workdir: Path, *, kill: bool = False, threads: int = 4, delay: str = "1", work_ms: int = 5
) -> LoadResult:
    """Server A on a listening socket this process holds; a steady load; server B started on
    the same socket; once B is ready A gets SIGTERM (or SIGKILL with ``kill``); the load goes
    on until A has exited, a little longer, then stops. Returns what the clients saw."""
    repo = workdir / "repo"
    # A slow warm-up: B holds the shared socket for a while before it can answer.
    _warming_model(repo, 500, LOAD_MODEL, "instance_group [ { count: 4 } ]\n")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    fd = listener.fileno()
    host, port = listener.getsockname()[:2]
    logs = workdir / "old.log", workdir / "new.log"

    def start(log: Path) -> TidalServer:
        flags = ["--http-listen-fd", str(fd), "--access-log", str(log)]
        flags += ["--shutdown-delay-secs", delay]
        return TidalServer(serve_args(repo, flags=flags), pass_fds=[fd])

    old = start(logs[0]).wait_started()
    new = None
    try:
        with _Load(host, port, threads, work_ms) as load:
            time.sleep(1.0)  # A alone
            new = start(logs[1]).wait_started()
            time.sleep(0.5)  # both
            signalled = time.time()
            old.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            load.result.old_exit = old.proc.wait(30)
            time.sleep(1.0)  # B alone
        result = load.result
    finally:
        old.stop()
        if new is not None:
            new.stop()
        listener.close()
    result.served_by_old = _answered(logs[0])
    result.served_by_new = _answered(logs[1])
    result.old_after_signal = _answered(logs[0], after=signalled)
    return result


@pytest.mark.slow
def test_rolling_replacement_on_a_shared_socket_loses_no_request(tmp_path):
    result = rolling_replacement(tmp_path)
    assert result.failures == [], f"{len(result.failures)} failed: {result.failures[:5]}"
    assert result.old_exit == 0
    assert result.served_by_old > 0, result
    assert result.served_by_new > 0, result
    # Every answer a client counted is in exactly one server's access log.
    assert result.served_by_old + result.served_by_new == result.ok, result


@pytest.mark.slow
def test_on_a_shared_socket_new_connections_wait_for_the_replacement(tmp_path):
    """During the delay the old server leaves the shared socket alone: a connection that
    arrives then is not taken by it, and the replacement answers it once started."""
    _slow_repo(tmp_path)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    fd = listener.fileno()
    flags = ["--http-listen-fd", str(fd), "--shutdown-delay-secs", "2"]
    old = TidalServer(serve_args(tmp_path, flags=flags), pass_fds=[fd]).wait_started()
    new = None
    late = http.client.HTTPConnection(*listener.getsockname()[:2], timeout=60)
    try:
        old.proc.send_signal(signal.SIGTERM)
        wait_for_line(old, re.compile("new connections left to the processes sharing the socket"))
        late.connect()  # the kernel queues it; no server process takes it yet
        late.request("GET", "/v2/health/ready")
        late.sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            late.sock.recv(1, socket.MSG_PEEK)
        assert old.proc.poll() is None, "the delay should still be running"
        new = TidalServer(serve_args(tmp_path, flags=flags), pass_fds=[fd]).wait_started()
        late.sock.settimeout(60)
        response = late.getresponse()
        assert response.status == 200, response.read()
        assert wait_exit(old) == 0
    finally:
        late.close()
        old.stop()
        if new is not None:
            new.stop()
        listener.close()


# --------------------------------------------------------------------------- measurement


def _main() -> None:
    parser = argparse.ArgumentParser(description="Measure the rolling replacement.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kill", action="store_true", help="SIGKILL the old server instead")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--delay", default="1", help="--shutdown-delay-secs of both servers")
    parser.add_argument("--work-ms", type=int, default=5, help="model time of each request")
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as workdir:
            result = rolling_replacement(
                Path(workdir),
                kill=args.kill,
                threads=args.threads,
                delay=args.delay,
                work_ms=args.work_ms,
            )
        print(
            f"run {run}: ok={result.ok} failed={len(result.failures)} "
            f"old={result.served_by_old} (after signal {result.old_after_signal}) "
            f"new={result.served_by_new} old_exit={result.old_exit}"
        )
        for failure in sorted(set(result.failures))[:5]:
            print(f"    {failure[:160]}")


if __name__ == "__main__":
    _main()
