"""``HttpConnection``: one HTTP/1.1 connection's life, from accept to close.

It feeds what arrives to its ``RequestParser``, answers the requests it delivers in order
(pipelining), one at a time, and closes when told, when broken, or when the service's tick
finds it over a timeout. A handler that answers at once (returns the ``Reply``) is answered
from the read callback with no task; one that must wait (returns a coroutine) gets a task
per busy spell, which then answers the queued requests too.

* ``Expect: 100-continue`` gets ``100 Continue`` as soon as the headers are in (or, while an
  earlier pipelined response is still pending, right after that response).
* The peer closing its side (EOF or reset) while a request runs cancels that request's task,
  so ``CancelledError`` reaches the scheduler and the request is dropped; queued ones too.
* A refused request (malformed, an upgrade, a head or body too large, a head not complete
  within the header timeout, or refused by the handler's ``check_head``) gets its answer
  after every earlier response; then the write side is shut and unread input is discarded
  for a short while before the close, so the peer reads the answer instead of a reset.
* Shutdown (``end_keep_alive``) makes each connection close right after its next response,
  which says ``connection: close``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from tidal.core.reply import Reply, error_reply
from tidal.http1.parsing import RequestParser, refusal
from tidal.http1.wire import CLOSE_AFTER, CONTINUE, write_reply

if TYPE_CHECKING:
    from tidal.http1.transport import HttpService

logger = logging.getLogger(__name__)

PIPELINE_LIMIT = 8  # queued requests on one connection before reading pauses
LINGER_SECONDS = 2.0  # how long unread input is discarded before closing after a refusal

Request = tuple[Any, Any, Any, Any, int]  # method, path, headers, body, keep; or a refusal


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 connection: parse, queue, answer in order, close when told or broken."""

    __slots__ = (
        "_allowed",
        "_continue_pending",
        "_discard",
        "_drain_waiter",
        "_feed",
        "_handle",
        "_idle_ticks",
        "_linger",
        "_loop",
        "_lost",
        "_queue",
        "_reading_paused",
        "_request",
        "_service",
        "_stopping",
        "_task",
        "_transport",
        "_write_paused",
    )

    def __init__(self, service: HttpService) -> None:
        self._service = service
        self._handle = service.handlers.handle
        self._allowed = service.allowed_methods
        self._loop = service.loop
        self._request = RequestParser(
            self._on_request,
            self._on_continue,
            max_body=service.max_body_size,
            too_large=service.too_large,
            check_head=service.check_head,
            query_header=service.query_header,
        )
        self._feed = self._request.feed
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        self._continue_pending = False
        # requests parsed but not answered yet, behind the one ``_task`` is answering
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task | None = None
        self._discard = False  # input is ignored: closing, or lingering after a refusal
        self._lost = False
        self._stopping = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._idle_ticks = 0

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        service = self._service
        if not service._admit(self):
            self._discard = True
            transport.close()  # over the connection cap: the open ones are served first
        elif service.stopping:
            self._close(linger=False)
        elif service.closing_keep_alive:
            self._stopping = True  # a shutdown delay: one response, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._discard = True
        task = self._task
        if task is not None:
            task.cancel()  # the client went away: drop what it asked for
        self._queue.clear()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        # The parser calls back into this object, so the two form a cycle that only the
        # collector's rare full passes would free, each holding its last request body:
        # hundreds of MiB after a few hundred large requests on short connections.
        self._request.release()
        self._service._forget(self)

    def data_received(self, data: bytes) -> None:
        if self._discard:
            return
        self._idle_ticks = 0
        request = self._request
        try:
            if request.in_head:  # a head arriving in pieces: bound what it may take
                request.head_size += len(data)
                self._feed(data)
                if request.in_head:
                    request.check_head_size()
            else:
                self._feed(data)
        except Exception as exc:  # what cannot be parsed or was refused, answered in order
            self._reject(refusal(exc, data, self._allowed))

    def eof_received(self) -> bool | None:
        # A peer that closes its sending side has gone away as far as HTTP can tell (a client
        # that half-closes and a client that exits look the same): close, which cancels the
        # request in flight. Returning None lets the transport close itself.
        return None

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- parser callbacks -------------------------------------------------------------------

    def _on_continue(self) -> None:
        if self._task is None:
            self._transport.write(CONTINUE)
        else:  # an earlier response goes first; sent when the connection is idle again
            self._continue_pending = True

    def _on_request(
        self, method: str, path: str, headers: dict[str, str], body: bytes, keep: int
    ) -> None:
        self._continue_pending = False
        if self._discard:
            return  # an answer given earlier in this same read closed the connection
        request = (method, path, headers, body, keep)
        if self._task is None:
            if keep and not self._stopping and not self._write_paused:
                self._answer_now(request)
            else:
                self._task = self._loop.create_task(self._serve(request, None))
        else:
            queue = self._queue
            queue.append(request)
            if len(queue) >= PIPELINE_LIMIT and not self._reading_paused:
                self._reading_paused = True
                self._transport.pause_reading()

    # -- answering --------------------------------------------------------------------------

    def _answer_now(self, request: Request) -> None:
        """Answer a keep-alive request on an idle connection without a task, when the handler
        answers at once (a synchronous entry script does): a task per request costs more
        than some handlers' whole answer. A handler that must wait gets its task."""
        method, path, headers, body, keep = request
        try:
            reply = self._handle(method, path, headers, body)
        except Exception as exc:  # handle() answers every error itself; belt and braces
            reply = _internal_error(method, path, exc)
        if not isinstance(reply, Reply):
            self._task = self._loop.create_task(self._serve(request, reply))
            return
        try:
            write_reply(self._transport, reply, method == "HEAD", keep)
        except Exception:
            logger.exception("error writing an HTTP response")
            self._transport.abort()

    async def _serve(
        self, request: Request | None, pending: Coroutine[Any, Any, Reply] | None
    ) -> None:
        """Answer ``request`` (whose answer may be ``pending`` already), then every queued
        one, in order; one task per busy spell."""
        try:
            if pending is None and self._write_paused:
                await self._writable()  # the peer is not reading what was answered inline
            while request is not None:
                request = await self._serve_one(request, pending)
                pending = None
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("error writing an HTTP response")
            if not self._lost:
                self._transport.abort()
            return
        finally:
            self._task = None
        self._idle_again()

    async def _serve_one(
        self, request: Request, pending: Coroutine[Any, Any, Reply] | None
    ) -> Request | None:
        """Answer one request; the next queued one, or None when idle or closing."""
        method, path, headers, body, keep = request
        if method is None:  # a refusal, queued behind earlier responses
            write_reply(self._transport, path, False, CLOSE_AFTER)
            self._close(linger=True)
            return None
        try:
            answer = self._handle(method, path, headers, body) if pending is None else pending
            reply = answer if isinstance(answer, Reply) else await answer
        except Exception as exc:  # handle() answers every error itself; belt and braces
            reply = _internal_error(method, path, exc)
        if self._lost or self._transport.is_closing():
            return None  # cancelled, or aborted by the shutdown timeout
        queue = self._queue
        if keep and self._stopping and not queue and not self._request.in_message:
            keep = CLOSE_AFTER  # shutting down: this is the last response
        write_reply(self._transport, reply, method == "HEAD", keep)
        if not keep:
            self._close(linger=bool(queue) or self._request.in_message)
            return None
        if self._write_paused:
            await self._writable()
        return self._next_queued()

    def _next_queued(self) -> Request | None:
        queue = self._queue
        if not queue:
            return None
        request = queue.popleft()
        if self._reading_paused and len(queue) < PIPELINE_LIMIT // 2:
            self._reading_paused = False
            self._transport.resume_reading()
        return request

    def _idle_again(self) -> None:
        if self._discard or self._transport.is_closing():
            return
        if self._continue_pending:
            self._continue_pending = False
            self._transport.write(CONTINUE)
        if self._stopping and not self._request.in_message:
            self._close(linger=False)

    async def _writable(self) -> None:
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        try:
            await waiter
        finally:
            self._drain_waiter = None

    def _reject(self, reply: Reply) -> None:
        """Answer a request that cannot be parsed or was refused, after earlier ones; then
        close."""
        self._discard = True
        self._request.in_message = False
        logger.debug("refusing an HTTP request: %d %s", reply.status, reply.body[:200])
        if self._task is None:
            write_reply(self._transport, reply, False, CLOSE_AFTER)
            self._close(linger=True)
        else:
            self._queue.append((None, reply, None, None, CLOSE_AFTER))

    def _close(self, linger: bool) -> None:
        """Close after what is written; with ``linger``, first read and drop unread input for
        a while, so that the peer gets the last response rather than a reset."""
        self._discard = True
        transport = self._transport
        if transport.is_closing():
            return
        if linger and transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:
                transport.close()
                return
            if self._reading_paused:
                self._reading_paused = False
                transport.resume_reading()
            self._linger = self._loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    # -- service hooks ----------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Stop taking requests: close now if idle, else after the responses owed."""
        self._stopping = True
        self._close_if_idle()

    def _close_if_idle(self) -> bool:
        """Close now if nothing is being answered or received; True if it was closed."""
        if self._task is None and not self._request.in_message and not self._discard:
            self._close(linger=False)
            return True
        return False

    def _tick(self, head_limit: int, idle_limit: int) -> None:
        """One service tick: a head over ``head_limit`` ticks gets 408 (a byte now and then
        does not extend it); a connection idle over ``idle_limit`` ticks is closed (0: no
        limit)."""
        if self._discard:
            return
        request = self._request
        if request.in_head:
            request.head_ticks += 1
            if head_limit and request.head_ticks > head_limit:
                self._reject(self._service.head_timeout_reply())
            return
        if self._task is not None:
            self._idle_ticks = 0
            return
        self._idle_ticks += 1
        if idle_limit and self._idle_ticks > idle_limit:
            self._close(linger=False)

    def _abort(self) -> None:
        if not self._lost:
            self._transport.abort()


def _internal_error(method: str, path: str, exc: Exception) -> Reply:
    logger.error("unhandled error serving %s %s", method, path, exc_info=exc)
    return error_reply(500, f"internal error: {exc}")
