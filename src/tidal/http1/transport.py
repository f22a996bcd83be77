"""The HTTP/1.1 listener: ``HttpService`` accepts connections on a bound socket and bounds them.

Each accepted connection is an ``HttpConnection`` (``connection.py``) that parses with
``RequestParser`` (``parsing.py``) and writes with ``wire.py``. The service bounds what
connections may hold: at most ``max_connections`` open (more are closed on accept while the
open ones are served), ``header_timeout`` seconds from a request's first byte until its
headers are complete (then 408 and close, however the bytes trickle), and ``idle_timeout``
seconds of keep-alive idleness between requests. One timer, the service's tick, checks them
all: no per-request timer.

A handler may offer ``check_head(method, path, headers)``, called when a request's headers are
complete: a ``Reply`` it returns is the answer, sent before any body byte is read, and the
connection is closed (a missing key, say, costs no body). ``allowed_methods(path)`` lets the
405 for a method the parser does not know name what the target serves.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
import time
from collections.abc import Callable

from tidal.core.reply import Reply, RequestHandler, error_reply
from tidal.http1.connection import HttpConnection
from tidal.http1.parsing import HeadCheck, TooLarge, too_big

__all__ = ["HttpConnection", "HttpService"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_SIZE = 1 << 30  # 1 GiB
DEFAULT_HEADER_TIMEOUT = 15.0  # seconds from a request's first byte to its complete head
DEFAULT_IDLE_TIMEOUT = 75.0  # seconds an idle keep-alive connection stays open
DEFAULT_MAX_CONNECTIONS = 2048
_CAP_LOG_SECONDS = 10.0  # refusals over the cap are logged at most this often


class HttpService:
    """The HTTP/1.1 listener: accepts connections on a bound socket until ``shutdown``."""

    def __init__(
        self,
        handlers: RequestHandler,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        too_large: TooLarge = too_big,
        query_header: str | None = None,
    ) -> None:
        self.handlers = handlers
        self.max_body_size = max_body_size
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.too_large = too_large
        self.query_header = query_header
        self.check_head: HeadCheck | None = getattr(handlers, "check_head", None)
        self.allowed_methods: Callable[[str], str | None] | None = getattr(
            handlers, "allowed_methods", None
        )
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpConnection] = set()
        self.stopping = False
        self.closing_keep_alive = False  # a shutdown delay: each response ends its connection
        self._server: asyncio.AbstractServer | None = None
        self._sockname: tuple = ()
        self._all_closed: asyncio.Future | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._tick_seconds = 1.0
        self._head_ticks = 0
        self._idle_ticks = 0
        self._over_cap = 0  # connections refused since the last log line
        self._over_cap_logged = 0.0

    @classmethod
    async def start(
        cls,
        handlers: RequestHandler,
        sock: socket.socket,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        too_large: TooLarge = too_big,
        query_header: str | None = None,
        backlog: int = 2048,
        ssl: ssl_module.SSLContext | None = None,
        start_serving: bool = True,
    ) -> HttpService:
        """Serve on ``sock`` (bound and listening) from the running loop; HTTPS with ``ssl``.
        With ``start_serving`` false, connections are accepted only after :meth:`serve`.

        A timeout or ``max_connections`` of 0 is no limit. ``too_large(limit, size)`` is the
        answer to a body over ``max_body_size`` (Triton's 400 by default); with
        ``query_header``, the query string reaches the handler among the headers so named.
        """
        service = cls(
            handlers,
            max_body_size=max_body_size,
            header_timeout=header_timeout,
            idle_timeout=idle_timeout,
            max_connections=max_connections,
            too_large=too_large,
            query_header=query_header,
        )
        service._sockname = sock.getsockname()
        service._server = await service.loop.create_server(
            service.new_connection, sock=sock, backlog=backlog, ssl=ssl, start_serving=start_serving
        )
        service._start_ticker()
        return service

    def _start_ticker(self) -> None:
        """One tick for both timeouts, as often as the shorter needs (at most once a second);
        each limit in ticks."""
        timeouts = [t for t in (self.header_timeout, self.idle_timeout) if t and t > 0]
        if not timeouts:
            return
        self._tick_seconds = min(1.0, *timeouts)
        if self.header_timeout and self.header_timeout > 0:
            self._head_ticks = max(1, round(self.header_timeout / self._tick_seconds))
        if self.idle_timeout and self.idle_timeout > 0:
            self._idle_ticks = max(1, round(self.idle_timeout / self._tick_seconds))
        self._ticker = self.loop.call_later(self._tick_seconds, self._tick)

    def head_timeout_reply(self) -> Reply:
        """The answer to a request whose head is not complete within the header timeout."""
        return error_reply(
            408, f"the request headers were not complete within {self.header_timeout:g} s"
        )

    @property
    def sockname(self) -> tuple:
        """The listening address, as ``socket.getsockname`` gives it."""
        return self._sockname

    def new_connection(self) -> HttpConnection:
        """The protocol for one accepted connection; a subclass may return its own kind."""
        return HttpConnection(self)

    def _admit(self, connection: HttpConnection) -> bool:
        """Count a new connection in; False when it is over the cap (it is then closed)."""
        cap = self.max_connections
        if cap and len(self.connections) >= cap:
            self._over_cap += 1
            return False
        self.connections.add(connection)
        return True

    def _forget(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        waiter = self._all_closed
        if not self.connections and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _tick(self) -> None:
        head, idle = self._head_ticks, self._idle_ticks
        for connection in list(self.connections):
            connection._tick(head, idle)
        if self._over_cap and time.monotonic() - self._over_cap_logged > _CAP_LOG_SECONDS:
            logger.warning(
                "closed %d new HTTP connection(s): %d are open (the most allowed)",
                self._over_cap,
                len(self.connections),
            )
            self._over_cap = 0
            self._over_cap_logged = time.monotonic()
        self._ticker = self.loop.call_later(self._tick_seconds, self._tick)

    async def serve(self) -> None:
        """Start accepting connections (when started with ``start_serving`` false)."""
        assert self._server is not None
        if not self.stopping and not self.closing_keep_alive:
            await self._server.start_serving()

    def end_keep_alive(self, *, stop_accepting: bool) -> int:
        """Start of a shutdown delay: from now on every response says ``connection: close``
        and its connection closes once it is sent, so keep-alive clients reconnect elsewhere.

        Idle connections stay open until their next request: closing one could cross a
        request its client is sending at that moment, which then fails; closing right after a
        response that announced it is safe. With ``stop_accepting`` the listening socket is
        let go at once, so the other processes sharing it take the new connections. Returns
        the number of connections open.
        """
        self.closing_keep_alive = True
        if stop_accepting and self._server is not None:
            self._server.close()
        for connection in self.connections:
            connection._stopping = True
        return len(self.connections)

    def close_idle(self) -> int:
        """Close the connections with no request in flight or arriving; returns how many.

        At the end of a shutdown delay, a connection still idle has had no request since the
        delay began: its client is quiet, and its pool reconnects (elsewhere) when it sees the
        close, rather than being refused with 503 during the drain."""
        return sum(connection._close_if_idle() for connection in list(self.connections))

    async def shutdown(self, timeout: float) -> None:
        """Stop accepting; let the requests in flight finish and their responses go out;
        close idle connections now and whatever is still open after ``timeout`` seconds."""
        if self.stopping:
            return
        self.stopping = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        assert self._server is not None
        self._server.close()
        for connection in list(self.connections):
            connection._shutdown()
        if self.connections:
            self._all_closed = self.loop.create_future()
            await asyncio.wait((self._all_closed,), timeout=timeout)
            if self.connections:
                logger.warning(
                    "closing %d HTTP connection(s) still busy after %.0f s",
                    len(self.connections),
                    timeout,
                )
                tasks = [c._task for c in self.connections if c._task is not None]
                for connection in list(self.connections):
                    connection._abort()
                await asyncio.wait((self._all_closed,), timeout=1.0)
                if tasks:  # let the cancelled requests unwind
                    await asyncio.wait(tasks, timeout=1.0)
        await self._server.wait_closed()
