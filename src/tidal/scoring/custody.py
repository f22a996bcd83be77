"""Answering the clients of a scoring worker that dies in the middle of their request.

A worker that dies (``os._exit`` in run(), SIGKILL, the OOM killer) takes its sockets with
it: its clients would read an empty reply. So each worker hands the supervisor a duplicate of
every connection it accepts (``SCM_RIGHTS`` over a ``SOCK_SEQPACKET`` pair, once per
connection) and marks, in one shared byte per connection, whether a request is being answered
(a memory write per request, no system call). When the worker dies, the supervisor still holds
the connections: a busy one gets ``502`` with a JSON body, as a proxy in front of a dead
upstream answers; an idle one is closed.

The supervisor's copy keeps a connection open after the worker closes its own, so the worker
shuts the write side down itself (the peer sees the end at once) and then says "released".
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
import time
from mmap import mmap

import orjson

__all__ = ["CustodyClient", "CustodyKeeper", "died_reply"]

SLOTS = 4096  # connections a worker may have in custody at once (its cap is 2048)
LINGER_S = 2.0  # a 502 is followed by this long of discarding input, so it is not reset
_MESSAGE = struct.Struct("=ci")  # kind (H: hold, with the fd; R: released), slot
_HOLD, _RELEASE = b"H", b"R"
_SEND_BUFFER = 4 << 20


def _flags_file(size: int) -> int:
    """A shared, unnamed file of ``size`` zero bytes."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("tidal-score-custody")
    else:
        with tempfile.TemporaryFile() as handle:
            fd = os.dup(handle.fileno())
    os.ftruncate(fd, size)
    return fd


def died_reply(reason: str) -> bytes:
    """The whole HTTP response a busy connection of a dead worker gets."""
    body = orjson.dumps(
        {"message": f"the scoring worker ended while handling the request ({reason})"}
    )
    head = (
        "HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class CustodyClient:
    """The worker's side: hand each connection over, mark it busy while answering."""

    def __init__(self, sock_fd: int, flags_fd: int, slots: int = SLOTS) -> None:
        self._sock = socket.socket(fileno=sock_fd)
        self._sock.setblocking(False)  # never stall the event loop on a slow supervisor
        # Room for thousands of handovers between two reads of the supervisor (the kernel
        # caps it at net.core.wmem_max for unprivileged processes).
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SEND_BUFFER)
        self.flags = mmap(flags_fd, slots)
        os.close(flags_fd)
        self._free = list(range(slots - 1, -1, -1))

    def hold(self, fd: int) -> int:
        """Give the supervisor a copy of connection ``fd``; its slot, or -1 if not held."""
        if not self._free:
            return -1
        slot = self._free.pop()
        self.flags[slot] = 0
        try:
            socket.send_fds(self._sock, [_MESSAGE.pack(_HOLD, slot)], [fd])
        except OSError:
            self._free.append(slot)
            return -1
        return slot

    def release(self, slot: int, fd: int) -> None:
        """The worker is done with the connection: end it for the peer, free the slot."""
        self.flags[slot] = 0
        with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as copy:
            copy.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            self._sock.send(_MESSAGE.pack(_RELEASE, slot))
        self._free.append(slot)


class CustodyKeeper:
    """The supervisor's side for one worker: the connections it holds for that worker."""

    def __init__(self, slots: int = SLOTS) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.setblocking(False)
        flags_fd = _flags_file(slots)
        self._flags = mmap(flags_fd, slots)
        # For the worker's command line; close_worker_ends() once it has started.
        self.worker_fds = (theirs.detach(), flags_fd)
        self._held: dict[int, socket.socket] = {}

    def close_worker_ends(self) -> None:
        for fd in self.worker_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.worker_fds = (-1, -1)

    def fileno(self) -> int:
        return self.sock.fileno()

    def pump(self) -> None:
        """Take in every message the worker has sent."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, _MESSAGE.size, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return  # the worker is gone; what it sent before was read already
            self._take(data, fds)

    def _take(self, data: bytes, fds: list[int]) -> None:
        kind, slot = _MESSAGE.unpack(data)
        old = self._held.pop(slot, None)
        if old is not None:
            old.close()
        if kind == _HOLD and fds:
            self._held[slot] = socket.socket(fileno=fds.pop())
        for fd in fds:
            os.close(fd)

    def worker_ended(self, reason: str) -> list[tuple[socket.socket, float]]:
        """The worker died: answer its busy connections with 502, close the idle ones.
        Returns the answered ones, to be closed after lingering (see ``linger``)."""
        self.pump()
        lingering = []
        reply = died_reply(reason)
        for slot, conn in self._held.items():
            if not self._flags[slot]:
                conn.close()
                continue
            try:
                conn.setblocking(False)  # the dead worker shared the flag; no one else now
                conn.send(reply)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                conn.close()
                continue
            lingering.append((conn, time.monotonic() + LINGER_S))
        self._held.clear()
        return lingering

    def close(self) -> None:
        for conn in self._held.values():
            conn.close()
        self._held.clear()
        self.close_worker_ends()
        self.sock.close()
        self._flags.close()


def linger(lingering: list[tuple[socket.socket, float]]) -> list[tuple[socket.socket, float]]:
    """Discard what the peers of answered connections still send; close those that ended
    or whose time is up. Returns the ones still lingering."""
    now = time.monotonic()
    left = []
    for conn, deadline in lingering:
        try:
            while conn.recv(65536):
                pass
            ended = True  # EOF: the peer closed
        except (BlockingIOError, InterruptedError):
            ended = now > deadline
        except OSError:
            ended = True
        if ended:
            conn.close()
        else:
            left.append((conn, deadline))
    return left
