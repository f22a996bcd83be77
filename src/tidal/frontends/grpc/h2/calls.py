"""Calls on an HTTP/2 connection: a new stream checked and started, its request messages
taken, and the task that drives the servicer method and answers with its result or status.

A unary call starts a task once its request has ended; a bidirectional stream starts at its
headers and reads its requests from a queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import grpc

from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.context import CallContext, code_number
from tidal.frontends.grpc.h2.headers import RequestHead
from tidal.frontends.grpc.h2.messages import (
    DEADLINE_EXCEEDED,
    ENCODINGS,
    INTERNAL,
    OK,
    UNAUTHENTICATED,
    UNAVAILABLE,
    UNIMPLEMENTED,
    UNKNOWN,
    MessageReader,
)
from tidal.frontends.grpc.h2.methods import Method
from tidal.frontends.grpc.h2.sending import Sender
from tidal.frontends.grpc.h2.stream import Requests, Stream

if TYPE_CHECKING:
    from tidal.frontends.grpc.h2.server import TidalGrpcService
    from tidal.security.auth import BearerAuth

# The connection's logger, as before the split: log filters by name keep working.
logger = logging.getLogger("tidal.frontends.grpc.h2.connection")

_AbortError = grpc.aio.AbortError


class CallRunner(Sender):
    """Starts and runs the calls of ``H2Connection``; a mixin, whose state the connection's
    ``__init__`` sets."""

    _service: TidalGrpcService
    _methods: dict[str, Method]
    _auth: BearerAuth | None
    _limit: int
    _peer: str

    # -- a new call and its request messages ----------------------------------------------

    def _open(self, stream: Stream, head: RequestHead, end_stream: bool) -> None:
        """Check a new call and get it going (a stream now, a unary call at its end)."""
        if end_stream:
            stream.remote_closed = True
        method = self._admit(stream, head)
        if method is not None:
            self._start(stream, method, head, end_stream)

    def _admit(self, stream: Stream, head: RequestHead) -> Method | None:
        """The method of a call that passes every check; None once the call is answered."""
        if head.problem:
            self._abandon(stream, f.PROTOCOL_ERROR)
            return None
        if not head.is_grpc:
            self._respond_http(stream, 415)
            return None
        method = self._methods.get(head.path)
        if method is None:
            self._finish(stream, UNIMPLEMENTED, f"Method not found: {head.path}")
            return None
        refused = self._refusal(head)
        if refused is not None:
            self._finish(stream, *refused)
            return None
        if head.encoding not in ENCODINGS:
            self._finish(stream, UNIMPLEMENTED, f"grpc-encoding {head.encoding} is not supported")
            return None
        return method

    def _refusal(self, head: RequestHead) -> tuple[int, str] | None:
        """(status, message) when bearer auth or --grpc-restricted-protocol refuses the call."""
        if self._auth is not None:
            keys = self._auth.current()
            if head.refusal_keys is not keys:  # not computed yet, or the keys were replaced
                head.refusal = self._service.refusal(head.path, head.authorization)
                head.refusal_keys = keys
            if head.refusal is not None:
                return UNAUTHENTICATED, head.refusal
        restriction = self._service.restriction
        if restriction is not None:
            refused = restriction.refusal(head.path, head.metadata)
            if refused is not None:
                return UNAVAILABLE, refused
        return None

    def _start(self, stream: Stream, method: Method, head: RequestHead, end_stream: bool) -> None:
        """An admitted call: its message reader and deadline; a stream's task starts now."""
        stream.method = method
        stream.reader = MessageReader(self._limit, head.encoding)
        deadline = None
        if head.timeout is not None:
            deadline = time.monotonic() + head.timeout
            stream.timer = self._loop.call_later(head.timeout, self._expire, stream)
        stream.context = CallContext(head.metadata, deadline, self._peer)
        if method.streaming:
            stream.requests = Requests(self._loop)
            if end_stream:
                stream.requests.close()
            stream.task = self._loop.create_task(self._serve_stream(stream, method))
        elif end_stream:
            self._finish(stream, INTERNAL, "missing request message")

    def _on_message(self, stream: Stream, message: bytes) -> bool:
        """Take one request message; False when that ended the call."""
        method = stream.method
        assert method is not None
        if not method.streaming:
            if stream.message is not None:
                self._finish(stream, INTERNAL, "more than one request message on a unary call")
                return False
            stream.message = message
            return True
        try:
            request = method.deserialize(message)
        except Exception:
            self._finish(stream, INTERNAL, "cannot parse the request message")
            return False
        assert stream.requests is not None
        stream.requests.put(request)
        return True

    def _end_of_requests(self, stream: Stream) -> None:
        stream.remote_closed = True
        reader = stream.reader
        if reader is None:
            return  # answered (or being answered) before the request ended
        if reader.partial:
            self._finish(stream, INTERNAL, "the request ended inside a message")
            return
        method = stream.method
        assert method is not None
        if method.streaming:
            assert stream.requests is not None
            stream.requests.close()
        elif stream.task is None:
            if stream.message is None:
                self._finish(stream, INTERNAL, "missing request message")
                return
            message = stream.message
            stream.message = None
            stream.task = self._loop.create_task(self._serve_unary(stream, method, message))

    # -- calls ----------------------------------------------------------------------------

    async def _serve_unary(self, stream: Stream, method: Method, message: bytes) -> None:
        context = stream.context
        assert context is not None
        try:
            try:
                request = method.deserialize(message)
            except Exception:
                self._finish(stream, INTERNAL, "cannot parse the request message")
                return
            response = await method.call(request, context)
            if context._code is not None and context._code != grpc.StatusCode.OK:
                self._finish_with_context(stream, context)
                return
            if stream.expired:
                raise asyncio.CancelledError
            body = method.serialize(response)
        except _AbortError:
            self._finish_with_context(stream, context)
            return
        except asyncio.CancelledError:
            if stream.expired:  # our deadline timer cancelled it
                self._finish(stream, DEADLINE_EXCEEDED, "Deadline Exceeded")
                return
            raise
        except Exception as exc:
            logger.exception(
                "unexpected error in gRPC method %s", getattr(method.call, "__name__", "?")
            )
            self._finish(stream, UNKNOWN, f"Unexpected {type(exc).__name__}: {exc}")
            return
        finally:
            stream.task = None
        self._reply(stream, body)

    async def _serve_stream(self, stream: Stream, method: Method) -> None:
        context = stream.context
        assert context is not None and stream.requests is not None
        serialize = method.serialize
        try:
            async for response in method.call(stream.requests, context):
                if stream.id not in self._streams:
                    return
                self._send_message(stream, serialize(response))
                if stream.pending:  # the client's window is full: wait for it to read
                    await self._drained(stream)
            if context._code is not None and context._code != grpc.StatusCode.OK:
                self._finish_with_context(stream, context)
            else:
                self._finish(stream, OK, "", context._trailers)
        except _AbortError:
            self._finish_with_context(stream, context)
        except asyncio.CancelledError:
            if stream.expired:
                self._finish(stream, DEADLINE_EXCEEDED, "Deadline Exceeded")
                return
            raise
        except Exception as exc:
            logger.exception("unexpected error in a gRPC stream")
            self._finish(stream, UNKNOWN, f"Unexpected {type(exc).__name__}: {exc}")
        finally:
            stream.task = None

    def _finish_with_context(self, stream: Stream, context: CallContext) -> None:
        code = context._code
        number = code_number(code) if code is not None else UNKNOWN
        self._finish(stream, number, context._details, context._trailers)

    def _expire(self, stream: Stream) -> None:
        """The call's grpc-timeout passed: cancel it (its task answers DEADLINE_EXCEEDED)."""
        stream.timer = None
        if stream.id not in self._streams:
            return
        stream.expired = True
        if stream.context is not None:
            stream.context._cancelled = True
        if stream.task is not None:
            stream.task.cancel()
        else:
            self._finish(stream, DEADLINE_EXCEEDED, "Deadline Exceeded")
