"""Listening sockets: bound here, or handed down by a parent process."""

from __future__ import annotations

import os
import socket

__all__ = ["bind_socket", "inherited_socket"]

BACKLOG = 2048


def bind_socket(
    address: str, port: int, *, nodelay: bool = False, inheritable: bool = False
) -> socket.socket:
    """A listening, non-blocking TCP socket; port 0 picks a free one (``getsockname``).

    No SO_REUSEPORT: a port in use is an ``OSError``, never a second server sharing it.
    ``inheritable`` lets child processes serve it (a supervisor's workers, a service's
    generations); ``nodelay`` is inherited by the accepted connections.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if nodelay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
        if inheritable:
            sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def inherited_socket(fd: int) -> socket.socket:
    """The listening TCP socket a parent handed down as ``fd`` (its own copy, so closing it
    leaves the parent's open). Raises ``OSError`` when ``fd`` is not a listening socket."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            raise OSError(f"file descriptor {fd} is not a listening TCP socket")
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
