"""Bearer-key authentication for gRPC: ``authorization: Bearer <key>`` metadata or
``UNAUTHENTICATED``. Health RPCs follow the HTTP health paths' openness."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from tidal.security.auth import BearerAuth

# gRPC method -> the HTTP path whose openness it shares.
_HEALTH_METHODS = {
    "/inference.GRPCInferenceService/ServerLive": "/v2/health/live",
    "/inference.GRPCInferenceService/ServerReady": "/v2/health/ready",
}


def refusal(auth: BearerAuth, method: str, authorization: str | None) -> str | None:
    """Why a call to ``method`` (``/package.Service/Rpc``) carrying ``authorization`` is
    refused, or None when it may go on; for transports that check calls themselves."""
    path = _HEALTH_METHODS.get(method)
    if path is not None and auth.is_open(path):
        return None
    return auth.verdict(authorization)


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without a valid key before they reach the servicer."""

    def __init__(self, auth: BearerAuth) -> None:
        self._auth = auth

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        path = _HEALTH_METHODS.get(details.method)
        if handler is None or (path is not None and self._auth.is_open(path)):
            return handler
        authorization = None
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                authorization = value if isinstance(value, str) else value.decode("latin-1")
                break
        reason = self._auth.verdict(authorization)
        if reason is None:
            return handler
        return _refusal(handler, reason)


def _refusal(handler: grpc.RpcMethodHandler, reason: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that fails with UNAUTHENTICATED."""

    async def unary(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)

    async def streaming(request: object, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, reason)
        yield  # pragma: no cover - makes this an async generator

    kinds = (handler.request_deserializer, handler.response_serializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary, *kinds)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(streaming, *kinds)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, *kinds)
    return grpc.stream_stream_rpc_method_handler(streaming, *kinds)
