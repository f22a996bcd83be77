"""``TidalGrpcService``: tidal's own HTTP/2 transport serving ``InferenceServicer``, with the
same start/shutdown/port interface as the ``grpc.aio`` ``GrpcService``."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module

from tidal.core.sockets import bind_socket
from tidal.frontends.grpc.h2.bounds import Bounds
from tidal.frontends.grpc.h2.connection import H2Connection
from tidal.frontends.grpc.h2.methods import method_table
from tidal.frontends.grpc.h2.upkeep import Keepalive, Ticks
from tidal.frontends.grpc.server import MAX_MESSAGE_BYTES
from tidal.frontends.grpc.service import InferenceServicer
from tidal.security.auth import BearerAuth
from tidal.security.restricted import GrpcRestriction
from tidal.server.facade import InferenceServer

logger = logging.getLogger(__name__)


class TidalGrpcService:
    """``inference.GRPCInferenceService`` over tidal's HTTP/2 transport on one address."""

    def __init__(
        self,
        servicer: InferenceServicer,
        auth: BearerAuth | None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        keepalive: Keepalive | None = None,
        bounds: Bounds | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.servicer = servicer
        self.methods = method_table(servicer)
        self.auth = auth
        self.max_message_bytes = max_message_bytes
        self.connections: set[H2Connection] = set()
        self.stopping = False
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._all_closed: asyncio.Future[None] | None = None
        self.bounds = bounds or Bounds()
        self.ticks = Ticks(keepalive or Keepalive(), self.bounds)
        self._ticker: asyncio.TimerHandle | None = None
        self.restriction: GrpcRestriction | None = None  # --grpc-restricted-protocol

    @classmethod
    async def start(
        cls,
        facade: InferenceServer,
        address: str,
        port: int,
        *,
        auth: BearerAuth | None = None,
        restriction: GrpcRestriction | None = None,
        ssl: ssl_module.SSLContext | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        keepalive: Keepalive | None = None,
        bounds: Bounds | None = None,
    ) -> TidalGrpcService:
        """Bind ``address:port`` (0 picks a free port) and serve; TLS with ``ssl`` (which
        should offer ALPN ``h2``); calls need a key from ``auth`` when given; keepalive,
        ping policing and idle close as ``keepalive`` says (Triton's defaults when None);
        header-read timeout and connection cap as ``bounds`` says.

        Raises ``OSError`` when the address cannot be bound.
        """
        service = cls(InferenceServicer(facade), auth, max_message_bytes, keepalive, bounds)
        service.restriction = restriction
        sock = bind_socket(address, port, nodelay=True)
        service.port = sock.getsockname()[1]
        service._server = await service.loop.create_server(
            lambda: H2Connection(service), sock=sock, ssl=ssl
        )
        service._ticker = service.loop.call_later(service.ticks.seconds, service._tick)
        return service

    def _tick(self) -> None:
        """The one upkeep timer of every connection (see ``upkeep``)."""
        ticks = self.ticks
        self._ticker = self.loop.call_later(ticks.seconds, self._tick)
        for connection in list(self.connections):
            try:
                connection._tick(ticks)
            except Exception:  # a bug must cost this connection at most, never the timer
                logger.exception("error in HTTP/2 connection upkeep")
                connection.abort()

    def refusal(self, method: str, authorization: str | None) -> str | None:
        """Why a call to ``method`` is refused by bearer auth; None when it may go on."""
        from tidal.security.grpc_auth import refusal

        assert self.auth is not None
        return refusal(self.auth, method, authorization)

    def forget(self, connection: H2Connection) -> None:
        self.connections.discard(connection)
        waiter = self._all_closed
        if not self.connections and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def ask_clients_to_leave(self) -> int:
        """At the start of --shutdown-delay-secs: every open connection gets a graceful
        GOAWAY, so clients take their next calls elsewhere; returns how many were told."""
        connections = list(self.connections)
        for connection in connections:
            connection.ask_to_leave()
        return len(connections)

    async def shutdown(self, timeout: float) -> None:
        """GOAWAY to every client, let the calls in flight finish for up to ``timeout``
        seconds (open streams take no new requests), then close what is left."""
        if self.stopping:
            return
        self.stopping = True
        assert self._server is not None
        self._server.close()
        self.servicer.stop_streams()
        for connection in list(self.connections):
            connection.shutdown()
        if self.connections:
            self._all_closed = self.loop.create_future()
            await asyncio.wait((self._all_closed,), timeout=timeout)
            if self.connections:
                logger.warning(
                    "closing %d gRPC connection(s) still busy after %.0f s",
                    len(self.connections),
                    timeout,
                )
                tasks = [t for c in self.connections for t in c.tasks]
                for connection in list(self.connections):
                    connection.abort()
                await asyncio.wait((self._all_closed,), timeout=1.0)
                if tasks:
                    await asyncio.wait(tasks, timeout=1.0)
        # Bounded: a connection that never reports its loss must not hold up the exit.
        await asyncio.wait((asyncio.ensure_future(self._server.wait_closed()),), timeout=2.0)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
