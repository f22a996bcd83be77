"""Bounded HTTP/1.1 connections on ``tidal serve``: the header-read timeout, the keep-alive
idle timeout and the connection cap, each against a real server over raw sockets; and the 405
a known route gives for a method it does not serve."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import TidalServer, error_message, running_server
from .models import identity_model

READY = b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits")
    identity_model(root, "FP32")
    return root


def _connect(server: TidalServer) -> socket.socket:
    assert server.host is not None and server.port is not None
    return socket.create_connection((server.host, server.port), timeout=5)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server ends the connection (EOF or reset) within ``seconds``; whatever
    it writes first (a response, a 408) is read and skipped."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
    return False


def _ask(sock: socket.socket) -> bytes:
    sock.sendall(READY)
    return sock.recv(65536)


@pytest.fixture(scope="module")
def server(repo: Path) -> Iterator[TidalServer]:
    with running_server(repo) as started:
        yield started


# ----------------------------------------------------------------------------- header timeout


class _Tricklers:
    """``count`` connections that each send a request line and then one header byte a second,
    never finishing the head; records when the server closes each of them."""

    def __init__(self, server: TidalServer, count: int) -> None:
        self.socks = [_connect(server) for _ in range(count)]
        self.closed_at: dict[int, float] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        for sock in self.socks:
            sock.setblocking(False)
            sock.send(b"GET /v2/health/ready HTTP/1.1\r\nX-Slow: ")
        self._thread.start()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        for index, sock in enumerate(self.socks):
            selector.register(sock, selectors.EVENT_READ, index)
        next_byte = time.monotonic() + 1.0
        while not self._stop.is_set() and len(self.closed_at) < len(self.socks):
            for key, _ in selector.select(timeout=0.1):
                try:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                if not data:
                    self.closed_at[key.data] = time.monotonic() - self.started
                    selector.unregister(key.fileobj)
            if time.monotonic() >= next_byte:
                next_byte += 1.0
                for index, sock in enumerate(self.socks):
                    if index not in self.closed_at:
                        with contextlib.suppress(OSError):
                            sock.send(b"a")
        selector.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.socks:
            sock.close()


@pytest.mark.slow
def test_trickling_heads_are_closed_after_the_header_timeout(repo: Path) -> None:
    """200 connections that trickle a header byte a second are closed once the header timeout
    (2 s here) runs out, though each byte arrives well within it; the server answers a normal
    client all the while."""
    flags = ("--http-header-timeout-secs", "2", "--http-idle-timeout-secs", "60")
    with running_server(repo, flags=flags) as server:
        tricklers = _Tricklers(server, 200)
        answers = []
        try:
            with httpx.Client(base_url=server.base_url, timeout=5) as client:
                while time.monotonic() - tricklers.started < 6:
                    answers.append(client.get("/v2/health/ready").status_code)
                    time.sleep(0.2)
        finally:
            tricklers.stop()
        closed = tricklers.closed_at
        assert len(closed) == 200, f"only {len(closed)} of 200 trickling connections closed"
        assert max(closed.values()) < 5.0, max(closed.values())
        assert min(closed.values()) > 1.5, min(closed.values())  # not before the timeout
        assert answers and set(answers) == {200}, answers


def test_a_slow_head_gets_408(repo: Path) -> None:
    flags = ("--http-header-timeout-secs", "1")
    with running_server(repo, flags=flags) as server, _connect(server) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\n")
        sock.settimeout(5)
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert b'{"error":' in head
        assert _closed_within(sock, 5)


# ----------------------------------------------------------------------------- idle timeout


@pytest.mark.slow
def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(repo: Path) -> None:
    flags = ("--http-idle-timeout-secs", "1", "--http-header-timeout-secs", "30")
    with running_server(repo, flags=flags) as server:
        with _connect(server) as sock:
            assert _ask(sock).startswith(b"HTTP/1.1 200 ")
            started = time.monotonic()
            assert _closed_within(sock, 5), "the idle connection stayed open"
            assert time.monotonic() - started > 0.9
        with _connect(server) as busy:  # a connection in use is not idle
            for _ in range(4):
                time.sleep(0.5)
                assert _ask(busy).startswith(b"HTTP/1.1 200 ")


# ----------------------------------------------------------------------------- connection cap


def test_connections_over_the_cap_are_closed_on_accept(repo: Path) -> None:
    with running_server(repo, flags=("--http-max-connections", "4")) as server:
        first = [_connect(server) for _ in range(4)]
        try:
            for sock in first:
                assert _ask(sock).startswith(b"HTTP/1.1 200 ")
            with _connect(server) as extra:
                assert _closed_within(extra, 5), "connection 5 over a cap of 4 was served"
            for sock in first:  # the open ones are still served
                assert _ask(sock).startswith(b"HTTP/1.1 200 ")
            first.pop().close()
            deadline = time.monotonic() + 5
            while True:  # a freed place is taken again
                with _connect(server) as again:
                    try:
                        if _ask(again).startswith(b"HTTP/1.1 200 "):
                            break
                    except ConnectionResetError:
                        pass
                assert time.monotonic() < deadline, "no new connection after one closed"
                time.sleep(0.1)
        finally:
            for sock in first:
                sock.close()


# ----------------------------------------------------------------------------- 405


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/v2/models/identity_fp32/versions/1/ready", "GET"),
        ("TRACE", "/v2/models/identity_fp32/versions/x/ready", "GET"),
        ("GET", "/v2/models/identity_fp32/versions/x/infer", "POST"),
        ("PUT", "/v2/repository/name/index", "POST"),
        ("PROPFIND", "/v2/health/ready", "GET"),
    ],
)
def test_a_method_a_route_does_not_serve_is_405(
    server: TidalServer, method: str, path: str, allow: str
) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        response = client.request(method, path)
        error_message(response, 405)
        assert response.headers["allow"] == allow
        assert error_message(client.request("TRACE", "/v2/nothing"), 404)


def test_an_unknown_method_is_405(server: TidalServer) -> None:
    with _connect(server) as sock:
        sock.sendall(b"BREW /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n")
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 405 "), head
        assert b"\r\nallow: GET\r\n" in head
        assert b'{"error":"method BREW is not allowed' in head
