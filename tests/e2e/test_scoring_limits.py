"""``tidal score``'s request body limit and its answers from the headers alone: a body over the
limit is 413 and a keyed service's request without a key is 401, both before the body is read."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tidal.security.keys import KeyHashes, write_keys_file

from .score_scripts import JSON_SCRIPT, ScoreServer, write_script

KEY = "the-key-for-limit-tests"
MIB = 1024 * 1024


def _workers(supervisor: int) -> list[int]:
    """The pids of the supervisor's child processes (the workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == supervisor:
                pids.append(int(entry))
    return pids


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def _connect(server: ScoreServer) -> socket.socket:
    assert server.port is not None
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _stream_until_answered(sock: socket.socket, head: bytes, total: int) -> tuple[bytes, int]:
    """Send ``head`` and then up to ``total`` body bytes, stopping as soon as the server
    answers; returns the answer and how many body bytes went out before it."""
    sock.sendall(head)
    sock.setblocking(False)
    chunk = b"x" * MIB
    sent = 0
    answer = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            answer = sock.recv(65536)
            if answer:
                break
        except BlockingIOError:
            pass
        if sent < total:
            try:
                sent += sock.send(chunk[: total - sent])
            except BlockingIOError:
                time.sleep(0.001)
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            time.sleep(0.01)
    sock.setblocking(True)
    return answer, sent


def _script(folder: Path) -> Path:
    return write_script(folder, JSON_SCRIPT)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoreServer]:
    """A keyed service whose body limit (1 GiB) is above the bodies sent: a refusal is the
    key's, not the limit's."""
    folder = tmp_path_factory.mktemp("keyed")
    keys = folder / "keys.json"
    write_keys_file(keys, KeyHashes.of(KEY, KEY + "-2"))
    args = ["--entry_script", str(_script(folder)), "--auth-keys-file", str(keys)]
    server = ScoreServer([*args, "--max-request-body-size", str(1024 * MIB)])
    yield server.wait_started()
    server.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoreServer]:
    folder = tmp_path_factory.mktemp("plain")
    server = ScoreServer(["--entry_script", str(_script(folder))])
    yield server.wait_started()
    server.stop()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_unauthenticated_300_mib_body_is_401_before_it_is_read(
    keyed: ScoreServer, framing: str
) -> None:
    workers = _workers(keyed.proc.pid)
    assert workers
    before = {pid: _rss_kib(pid) for pid in workers}
    size = 300 * MIB
    length = (
        f"Content-Length: {size}" if framing == "content-length" else "Transfer-Encoding: chunked"
    )
    head = f"POST /score HTTP/1.1\r\nHost: t\r\n{length}\r\n\r\n".encode()
    started = time.monotonic()
    with _connect(keyed) as sock:
        answer, sent = _stream_until_answered(sock, head, size)
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert b'"message":' in answer
    assert took < 5, took
    assert sent < size, "the whole body went out before the answer"
    grown = max(_rss_kib(pid) - before[pid] for pid in workers)
    assert grown < 8 * 1024, f"a worker grew by {grown} KiB"
    with httpx.Client(base_url=keyed.base_url, timeout=30) as http:  # still serving
        ok = http.post("/score", json={"x": 1}, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200, ok.text


def test_a_keyed_request_with_a_key_is_not_refused_early(keyed: ScoreServer) -> None:
    body = b'{"x": "' + b"y" * (2 * MIB) + b'"}'
    with httpx.Client(base_url=keyed.base_url, timeout=30) as http:
        ok = http.post("/score", content=body, headers={"Authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200, ok.text[:200]


def test_a_content_length_over_the_limit_is_413_at_once(plain: ScoreServer) -> None:
    head = b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\n\r\nx"
    started = time.monotonic()
    with _connect(plain) as sock:
        sock.sendall(head)
        sock.settimeout(5)
        answer = sock.recv(65536)
        took = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"connection: close" in answer.lower()
        assert b"67108864" in answer  # the default limit, named
        sock.settimeout(5)
        assert sock.recv(65536) == b""  # closed, not hung
    assert took < 2, took


def test_the_limit_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"TIDAL_SCORE_MAX_BODY_SIZE": "1000"}
    server = ScoreServer(["--entry_script", str(_script(tmp_path))], env=env).wait_started()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            fits = http.post("/score", content=b'{"a":"' + b"a" * 992 + b'"}')
            assert fits.status_code == 200, fits.text
            over = http.post("/score", content=b'{"a":"' + b"a" * 993 + b'"}')
            assert over.status_code == 413, over.text
            assert "1000" in over.json()["message"]

            def chunks() -> Iterator[bytes]:
                yield b'{"a":"' + b"a" * 600
                yield b"a" * 600 + b'"}'

            chunked = http.post("/score", content=chunks())
            assert chunked.status_code == 413, chunked.text
    finally:
        server.stop()


@pytest.mark.parametrize("value", ["0", "-5", "lots"])
def test_a_bad_limit_is_a_usage_error(tmp_path: Path, value: str) -> None:
    server = ScoreServer(
        ["--entry_script", str(_script(tmp_path)), "--max-request-body-size", value]
    )
    assert server.wait_exited() == 2
    assert "--max-request-body-size" in server.stderr
