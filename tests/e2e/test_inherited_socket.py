"""``--http-listen-fd``: serving HTTP on a listening socket handed down by a parent, and two
servers sharing one such socket (the way a supervisor replaces a server without refusing a
connection)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from .conftest import TidalServer, serve_args


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock
    sock.close()


def _serve_on(sock: socket.socket, main_repository) -> TidalServer:
    fd = sock.fileno()
    args = serve_args(main_repository, flags=["--http-listen-fd", str(fd)])
    return TidalServer(args, pass_fds=[fd])


def test_serves_on_the_inherited_socket(listener, main_repository):
    server = _serve_on(listener, main_repository).wait_started()
    try:
        port = listener.getsockname()[1]
        assert server.port == port  # it announces the socket's address, not --http-port
        answer = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=10)
        assert answer.status_code == 200
    finally:
        assert server.stop() == 0


def test_a_second_server_takes_over_the_same_socket(listener, main_repository):
    port = listener.getsockname()[1]
    first = _serve_on(listener, main_repository).wait_started()
    second = _serve_on(listener, main_repository).wait_started()
    try:
        assert first.stop() == 0
        # The first one is gone; the shared accept queue is now served by the second alone.
        for _ in range(20):
            with httpx.Client(timeout=10) as client:
                assert client.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200
    finally:
        assert second.stop() == 0


def test_a_descriptor_that_is_not_a_listening_socket_stops_start_up(main_repository, tmp_path):
    with open(tmp_path / "plain.txt", "w") as plain:
        fd = plain.fileno()
        args = serve_args(main_repository, flags=["--http-listen-fd", str(fd)])
        server = TidalServer(args, pass_fds=[fd])
        assert server.wait_exited() != 0
        server.stop()  # closes the stderr pipe
    assert "--http-listen-fd" in server.stderr or "not a listening" in server.stderr
