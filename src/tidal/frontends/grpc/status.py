"""The one table from the core's error codes to gRPC status codes, and the one catch site."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from tidal.core.errors import ErrorCode, InferenceError

logger = logging.getLogger(__name__)

# Triton's mapping from TRITONSERVER_Error codes to gRPC status codes.
GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.UNKNOWN: grpc.StatusCode.UNKNOWN,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.INVALID_ARG: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.UNSUPPORTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.CANCELLED: grpc.StatusCode.CANCELLED,
}

Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


def status_of(error: InferenceError) -> grpc.StatusCode:
    return GRPC_STATUS.get(error.code, grpc.StatusCode.UNKNOWN)


def error_text(error: BaseException) -> str:
    """The client-facing message of any failure; unexpected ones are logged with a trace."""
    if isinstance(error, InferenceError):
        return error.message
    logger.error("unexpected error in a gRPC call", exc_info=error)
    return f"internal error: {error}"


def unary(method: Handler) -> Handler:
    """Wrap a unary servicer method so that every failure ends the call with a status and a
    message, never a traceback: ``InferenceError`` by the table, anything else INTERNAL."""

    @functools.wraps(method)
    async def guarded(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except InferenceError as exc:
            await context.abort(status_of(exc), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # the server must answer and keep serving, whatever broke
            await context.abort(grpc.StatusCode.INTERNAL, error_text(exc))

    return guarded
