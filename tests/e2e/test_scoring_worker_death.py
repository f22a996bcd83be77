"""A ``/score`` worker that dies in the middle of a request: its client gets a 502 with a JSON
body (what a proxy in front of Azure ML's server answers for a dead upstream), not an empty
reply, and the worker is replaced so that later requests succeed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .score_scripts import ScoreServer, write_script

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux")

# run() that dies on demand, outright (os._exit) or by SIGKILL; otherwise it answers its pid.
DYING_SCRIPT = """
import json, os, signal

def init():
    pass

def run(raw):
    how = json.loads(raw).get("die")
    if how == "exit":
        os._exit(1)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return {"pid": os.getpid()}
"""

ASYNC_DYING_SCRIPT = """
import asyncio, json, os

def init():
    pass

async def run(raw):
    await asyncio.sleep(0.05)
    if json.loads(raw).get("die"):
        os._exit(1)
    return {"pid": os.getpid()}
"""

DIED_MESSAGE = "the scoring worker ended while handling the request"


def start(tmp_path: Path, script: str, workers: int = 2) -> ScoreServer:
    entry = write_script(tmp_path, script)
    return ScoreServer(
        ["--entry_script", str(entry), "--worker_count", str(workers)]
    ).wait_started()


@pytest.fixture(scope="module")
def dying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoreServer]:
    server = start(tmp_path_factory.mktemp("dying"), DYING_SCRIPT)
    yield server
    alive = server.proc.poll() is None
    server.stop()
    assert alive, f"tidal score died:\n{server.stderr}"


def served_again(client: httpx.Client, within: float = 30.0) -> set[int]:
    """PIDs that answer once the dead worker's replacement is up (both workers serve)."""
    deadline = time.monotonic() + within
    pids: set[int] = set()
    while time.monotonic() < deadline and len(pids) < 2:
        with httpx.Client(base_url=str(client.base_url), timeout=10) as fresh:
            response = fresh.post("/score", json={})
        assert response.status_code == 200, response.text
        pids.add(response.json()["pid"])
    return pids


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_a_worker_dying_in_run_answers_502_json_and_is_replaced(
    dying: ScoreServer, how: str
) -> None:
    with httpx.Client(base_url=dying.base_url, timeout=30) as client:
        victim = client.post("/score", json={}).json()["pid"]
        response = client.post("/score", json={"die": how})
        assert response.status_code == 502, response.text
        assert response.headers["content-type"] == "application/json"
        message = response.json()["message"]
        assert DIED_MESSAGE in message
        assert ("SIGKILL" in message) if how == "kill" else ("exited with code 1" in message)
        # The same client goes on (the 502 closed its connection; it opens another).
        assert client.post("/score", json={}).status_code == 200
        pids = served_again(client)
    assert len(pids) == 2, f"the dead worker was not replaced:\n{dying.stderr}"
    del victim  # whichever worker took the fatal request has died and been replaced


def test_an_async_run_dying_answers_502_json(tmp_path: Path) -> None:
    server = start(tmp_path, ASYNC_DYING_SCRIPT, workers=1)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            response = client.post("/score", json={"die": True})
            assert response.status_code == 502, response.text
            assert DIED_MESSAGE in response.json()["message"]
            deadline = time.monotonic() + 30
            while True:  # the replacement loads, then answers
                try:
                    answer = client.post("/score", json={})
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, server.stderr
                    time.sleep(0.2)
            assert answer.status_code == 200, answer.text
    finally:
        server.stop()


def test_a_response_that_closes_its_connection_still_ends_at_once(dying: ScoreServer) -> None:
    """The supervisor's copy of the connection must not keep it open for the client."""
    port = int(dying.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        )
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        took = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 200"), data
    assert took < 1.0, f"the end of the connection came {took:.2f}s after the request"
