"""Starting and stopping the gRPC service on a ``grpc.aio`` server."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from tritonclient.grpc import service_pb2_grpc

from tidal.frontends.grpc.service import InferenceServicer
from tidal.server.facade import InferenceServer

# Triton takes messages up to 2 GiB; gRPC's default of 4 MiB would refuse real tensors.
MAX_MESSAGE_BYTES = 2**31 - 1

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # A port in use must be an error, as for HTTP, not a second server sharing it.
    ("grpc.so_reuseport", 0),
]


SERVICE = "inference.GRPCInferenceService"
# RPCs registered with the core by name. grpc.aio waits on one pending call per registered
# method and re-arms it after each call, so registering all twenty makes every call pay for
# twenty; the hot path alone is registered and the rest go through the generic handler.
REGISTERED = ("ModelInfer",)


class _Handlers:
    """Collects the method handlers the generated ``add_..._to_server`` function builds."""

    def __init__(self) -> None:
        self.generic: tuple[grpc.GenericRpcHandler, ...] = ()
        self.by_method: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self.generic += tuple(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.by_method.update(handlers)


def _register(server: grpc.aio.Server, servicer: InferenceServicer) -> None:
    handlers = _Handlers()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, handlers)
    server.add_generic_rpc_handlers(handlers.generic)
    hot = {name: handlers.by_method[name] for name in REGISTERED if name in handlers.by_method}
    if hot and hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(SERVICE, hot)


class GrpcService:
    """``inference.GRPCInferenceService`` listening on one address."""

    def __init__(self, server: grpc.aio.Server, servicer: InferenceServicer, port: int) -> None:
        self._server = server
        self._servicer = servicer
        self.port = port

    @classmethod
    async def start(
        cls,
        facade: InferenceServer,
        address: str,
        port: int,
        *,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        credentials: grpc.ServerCredentials | None = None,
        options: Sequence[tuple[str, int]] = (),
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> GrpcService:
        """Bind ``address:port`` (port 0 picks a free one) and start serving; over TLS with
        ``credentials``; ``interceptors`` (authentication) see every call first; ``options``
        are more channel arguments (keepalive); a request message over ``max_message_bytes``,
        as received or inflated, is RESOURCE_EXHAUSTED.

        Raises ``OSError`` when the address cannot be bound.
        """
        # grpc core checks this cap on the declared size when a message's prefix arrives and
        # again while it inflates one ("Decompressed message larger than max"): a gzip bomb
        # is refused with at most the cap inflated (test_grpc_limits holds it to that).
        limits = [("grpc.max_receive_message_length", max_message_bytes)]
        server = grpc.aio.server(
            options=[*SERVER_OPTIONS, *limits, *options], interceptors=tuple(interceptors) or None
        )
        servicer = InferenceServicer(facade)
        _register(server, servicer)
        target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        try:
            if credentials is None:
                bound = server.add_insecure_port(target)
            else:
                bound = server.add_secure_port(target, credentials)
        except RuntimeError as exc:  # grpcio raises this when the bind fails
            raise OSError(str(exc)) from None
        if bound == 0:  # older grpcio reports a failed bind as port 0
            raise OSError(f"cannot bind {target}")
        await server.start()
        return cls(server, servicer, bound)

    async def shutdown(self, timeout: float) -> None:
        """Take no new calls, let those in flight finish for up to ``timeout`` seconds."""
        self._servicer.stop_streams()
        await self._server.stop(timeout)
