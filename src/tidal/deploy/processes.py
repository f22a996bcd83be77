"""A service's public port and its host process, seen from the CLI or the SDK."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

from tidal.core.sockets import bind_socket
from tidal.deploy.errors import ServiceError

__all__ = ["bind_public", "free_port", "host_alive", "port_free", "stop_group", "wait_port_free"]

_POLL_S = 0.2
_STOP_TIMEOUT_S = 45.0
_PORT_FREE_TIMEOUT_S = 10.0


def bind_public(port: int) -> socket.socket:
    try:
        return bind_socket("0.0.0.0", port, inheritable=True)
    except OSError as exc:
        raise ServiceError(
            "in_use", f"port {port} is not available ({exc.strerror or exc}); choose another"
        ) from None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def wait_port_free(port: int) -> None:
    deadline = time.monotonic() + _PORT_FREE_TIMEOUT_S
    while not port_free(port):
        if time.monotonic() > deadline:
            raise ServiceError("in_use", f"port {port} is still in use after stopping the service")
        time.sleep(_POLL_S)


def host_alive(pid: int) -> bool:
    """Whether ``pid`` is a live service host (not a zombie, not a recycled pid)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self").exists():
        try:
            return b"tidal.deploy.host" in proc.read_bytes()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pid: int) -> None:
    """SIGTERM to the host (it stops its servers), then SIGKILL to the group if it lingers."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while host_alive(pid) and time.monotonic() < deadline:
        time.sleep(_POLL_S)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)  # whatever is left of the group
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our own child when this process deployed it
