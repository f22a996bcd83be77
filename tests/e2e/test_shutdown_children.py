"""No child process outlives ``tidal serve`` or ``tidal score``.

A server stopped with SIGTERM (once or twice) ends every child after its exit timeout, even a
Python-model worker stuck in ``execute`` that ignores SIGTERM; a server killed outright
(SIGKILL) leaves children that notice and exit by themselves. Children are found through
``/proc/<pid>/task/*/children``, the whole tree down.
"""

from __future__ import annotations

import os
import signal
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from .conftest import TidalServer, binary_body, serve_args
from .models import write_text
from .score_scripts import ScoreServer, write_script

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs /proc"),
]

EXIT_TIMEOUT_S = 1
# exit timeout, answer grace (2 s), unload grace (5 s), the children's SIGTERM grace, slack
SERVE_GONE_S = EXIT_TIMEOUT_S + 2 + 5 + 5 + 5
ORPHAN_GONE_S = 5.0  # children of a killed parent notice within this

STUCK_MODEL = '''
import signal
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """An execute that never returns and ignores SIGTERM and SIGINT."""

    def initialize(self, args):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def execute(self, requests):
        while True:
            time.sleep(3600)
'''

STUCK_CONFIG = """
name: "stuck"
backend: "python"
max_batch_size: 0
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""

# run() that never returns: it swallows the scoring timeout and ignores SIGTERM.
STUCK_SCRIPT = """
import json, os, signal, time

def init():
    pass

def run(raw):
    if json.loads(raw).get("stuck"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            try:
                time.sleep(3600)
            except BaseException:
                pass
    return {"pid": os.getpid()}
"""


@pytest.fixture(scope="module")
def stuck_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("stuck_repo")
    write_text(repo / "stuck" / "1" / "model.py", textwrap.dedent(STUCK_MODEL))
    write_text(repo / "stuck" / "config.pbtxt", STUCK_CONFIG)
    return repo


# -- the process tree --------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue  # the task ended meanwhile
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first."""
    tree, todo = [], [pid]
    while todo:
        below = children(todo.pop())
        tree += below
        todo += below
    return tree


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent to reap it has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def survivors(pids: Iterable[int], within: float) -> list[int]:
    deadline = time.monotonic() + within
    pids = list(pids)
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return -1


def describe(pids: Iterable[int]) -> str:
    parts = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
            parts.append(f"{pid} (ppid {parent_of(pid)}): {cmd}")
        except OSError:
            parts.append(f"{pid}: gone")
    return "; ".join(parts)


def kill_all(pids: Iterable[int]) -> None:
    """Leave nothing behind when a test fails."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def wait_tree(pid: int, count: int, within: float = 30.0) -> list[int]:
    """The descendants of ``pid`` once there are at least ``count``."""
    deadline = time.monotonic() + within
    tree = descendants(pid)
    while len(tree) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        tree = descendants(pid)
    assert len(tree) >= count, describe(tree)
    return tree


# -- requests that hang ------------------------------------------------------------------------


def hang(url: str, path: str, body: bytes, headers: dict[str, str]) -> threading.Thread:
    """Send one request that will not be answered in time, on a thread; the outcome lands in
    the thread's ``outcome`` attribute."""

    def send() -> None:
        try:
            response = httpx.post(url + path, content=body, headers=headers, timeout=60)
            thread.outcome = f"{response.status_code} {response.text[:200]}"  # type: ignore[attr-defined]
        except httpx.HTTPError as exc:
            thread.outcome = repr(exc)  # type: ignore[attr-defined]

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def stuck_infer(server: TidalServer) -> threading.Thread:
    header = {
        "inputs": [
            {
                "name": "INPUT0",
                "shape": [1],
                "datatype": "FP32",
                "data": np.ones(1, np.float32).tolist(),
            }
        ]
    }
    body, headers = binary_body(header)
    thread = hang(server.base_url, "/v2/models/stuck/infer", body, headers)
    time.sleep(1.0)  # the request reaches the worker's execute
    return thread


@pytest.fixture
def serve_stuck(stuck_repo: Path) -> Iterator[TidalServer]:
    flags = ["--exit-timeout-secs", str(EXIT_TIMEOUT_S)]
    server = TidalServer(serve_args(stuck_repo, flags=flags)).wait_started()
    tree = wait_tree(server.proc.pid, 1)
    yield server
    kill_all([server.proc.pid, *tree])
    server.stop()


# -- tidal serve -------------------------------------------------------------------------------


@pytest.mark.parametrize("signals", [1, 2], ids=["sigterm", "sigterm-twice"])
def test_serve_ends_a_stuck_python_worker_after_the_exit_timeout(
    serve_stuck: TidalServer, signals: int
) -> None:
    server = serve_stuck
    tree = descendants(server.proc.pid)
    request = stuck_infer(server)
    started = time.monotonic()
    for _ in range(signals):
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
    left = survivors([server.proc.pid, *tree], SERVE_GONE_S)
    took = time.monotonic() - started
    kill_all(left)
    assert not left, f"still running {took:.1f}s after SIGTERM: {describe(left)}"
    request.join(5)
    assert getattr(request, "outcome", ""), "the stuck request got no outcome"


def test_serve_children_exit_when_the_server_is_killed(serve_stuck: TidalServer) -> None:
    server = serve_stuck
    tree = descendants(server.proc.pid)
    stuck_infer(server)
    server.proc.kill()
    left = survivors(tree, ORPHAN_GONE_S)
    kill_all(left)
    assert not left, f"outlived the killed server: {describe(left)}"


# -- tidal score -------------------------------------------------------------------------------


@pytest.fixture
def score_stuck(tmp_path: Path, stuck_repo: Path) -> Iterator[ScoreServer]:
    script = write_script(tmp_path, STUCK_SCRIPT)
    args = ["--entry_script", str(script), "--worker_count", "2"]
    args += ["--model-repository", str(stuck_repo), "--serve-arg=--http-port=0"]
    args += ["--serve-arg=--grpc-port=0", "--serve-arg=--metrics-port=0"]
    args += [f"--serve-arg=--exit-timeout-secs={EXIT_TIMEOUT_S}"]
    server = ScoreServer(args, {"SCORING_TIMEOUT_MS": "600000"}).wait_started()
    # two workers, the inference server and its Python worker
    tree = wait_tree(server.proc.pid, 4)
    yield server
    kill_all([server.proc.pid, *tree])
    server.stop()


def test_score_ends_every_child_after_sigterm(score_stuck: ScoreServer) -> None:
    server = score_stuck
    tree = descendants(server.proc.pid)
    requests = [hang(server.base_url, "/score", b'{"stuck": true}', {}) for _ in range(2)]
    time.sleep(1.0)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    left = survivors([server.proc.pid, *tree], 30)
    took = time.monotonic() - started
    kill_all(left)
    assert not left, f"still running {took:.1f}s after SIGTERM: {describe(left)}"
    for request in requests:
        request.join(5)
        # killed while stuck in run(): the supervisor answers the client for the worker
        assert getattr(request, "outcome", "").startswith("502 "), request.outcome  # type: ignore[attr-defined]


def test_score_children_exit_when_the_supervisor_is_killed(score_stuck: ScoreServer) -> None:
    server = score_stuck
    tree = descendants(server.proc.pid)
    hang(server.base_url, "/score", b'{"stuck": true}', {})
    time.sleep(1.0)
    server.proc.kill()
    left = survivors(tree, ORPHAN_GONE_S)
    kill_all(left)
    assert not left, f"outlived the killed supervisor: {describe(left)}"
