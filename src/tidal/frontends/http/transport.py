"""A lean HTTP/1.1 server: ``asyncio.Protocol`` + httptools, calling ``HttpHandlers.handle``.

One ``HttpConnection`` per TCP connection parses requests with httptools, runs each complete
request through ``handlers.handle(method, path, headers, body)`` and writes the ``Reply`` back.
A handler returns the ``Reply`` itself when it can answer at once, which is then written from
the read callback with no task; otherwise it returns a coroutine, awaited in a task. Requests
on one connection are answered in order (pipelining), one at a time.

What it does on purpose, beyond the happy path:

* ``Expect: 100-continue`` gets ``100 Continue`` as soon as the headers are in (or, while an
  earlier pipelined response is still pending, right after that response).
* The peer closing its side (EOF or reset) while a request runs cancels that request's task, so
  ``CancelledError`` reaches the scheduler and the request is dropped; queued requests are
  dropped too.
* Malformed requests, upgrade requests, oversize heads and bodies get ``{"error": ...}`` with
  400 or 431, after every earlier response, and then the connection is closed. Before the
  close the write side is shut down and unread input is discarded for a short while, so the
  peer reads the error instead of a reset.
* Connections idle for ``keep_alive_timeout`` seconds are closed.
* A shutdown delay (``end_keep_alive``) makes each connection close right after its next
  response, which says ``connection: close``; idle ones are never cut under a client that
  may be sending (``close_idle`` ends them only after the delay).

The per-request work is kept small: no per-request objects beyond the header dict, the request
tuple and (for an answer that waits) the task; constant response bytes are cached.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
from collections import deque
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any

import httptools

from tidal.frontends.http.handlers import Reply, RequestHandler, error_reply

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_SIZE = 1 << 30  # 1 GiB
DEFAULT_KEEP_ALIVE_TIMEOUT = 75.0  # seconds an idle connection stays open
MAX_HEAD_SIZE = 64 * 1024  # request line + headers, beyond the first read
PIPELINE_LIMIT = 8  # queued requests on one connection before reading pauses
LINGER_SECONDS = 2.0  # how long unread input is discarded before closing after an error
JOIN_LIMIT = 32 * 1024  # bodies up to this size are copied into one write with the head

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"

# keep-alive modes of a request
_CLOSE_AFTER = 0  # answer, then close
_KEEP = 1  # HTTP/1.1 keep-alive, nothing to say
_KEEP_10 = 2  # HTTP/1.0 keep-alive: the response must say "connection: keep-alive"

_METHODS: dict[bytes, str] = {
    m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH")
}
_HEADER_NAMES: dict[bytes, str] = {}  # raw header name -> lower-case str, bounded below
_HEADER_NAMES_MAX = 512
_PREFIXES: dict[int, dict[str, bytes]] = {}  # status -> content type -> head up to the length


class _Reject(Exception):
    """Raised in a parser callback to stop parsing and answer with an error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _prefix(status: int, content_type: str) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\ncontent-type: ...\\r\\ncontent-length: ``, cached."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    if "\r" in content_type or "\n" in content_type:
        content_type = "application/octet-stream"
    prefix = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: " % (
        status,
        reason.encode("ascii"),
        content_type.encode("latin-1", "replace"),
    )
    by_type = _PREFIXES.setdefault(status, {})
    if len(by_type) < 64:
        by_type[content_type] = prefix
    return prefix


def _too_big(limit: int, size: int | None = None) -> str:
    """Triton's answer to a body over --http-max-input-size: 400, naming the flag."""
    what = f"request body of {size} bytes" if size is not None else "request body"
    return (
        f"{what} exceeds the maximum allowed input size of {limit} bytes. "
        "Use --http-max-input-size to increase the limit."
    )


def _header_lines(headers: list[tuple[str, str]]) -> bytes:
    """The response's own headers, encoded at once; lines that would break the head are
    dropped (checked per line only when the whole block has a stray line break)."""
    text = "".join([f"{name}: {value}\r\n" for name, value in headers])
    count = len(headers)
    if text.count("\n") == count and text.count("\r") == count:
        return text.encode("latin-1", "replace")
    return b"".join([_header_line(name, value) for name, value in headers])


def _header_line(name: str, value: str) -> bytes:
    line = f"{name}: {value}\r\n"
    if line.count("\n") != 1 or line.count("\r") != 1:  # no header injection
        logger.error("dropping response header %r: it contains a line break", name)
        return b""
    return line.encode("latin-1", "replace")


class HttpConnection(asyncio.Protocol):
    """One HTTP/1.1 connection: parse, queue, answer in order, close when told or broken."""

    __slots__ = (
        "_body",
        "_body_size",
        "_continue_pending",
        "_discard",
        "_drain_waiter",
        "_handle",
        "_head_size",
        "_headers",
        "_idle_ticks",
        "_in_head",
        "_in_message",
        "_keep",
        "_linger",
        "_loop",
        "_lost",
        "_max_body",
        "_method",
        "_parser",
        "_queue",
        "_reading_paused",
        "_service",
        "_stopping",
        "_task",
        "_transport",
        "_url",
        "_write_paused",
    )

    def __init__(self, service: HttpService) -> None:
        self._service = service
        self._handle = service.handlers.handle
        self._loop = service.loop
        self._max_body = service.max_body_size
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        # the request being parsed
        self._url = b""
        self._method = ""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] | None = None
        self._body_size = 0
        self._keep = _KEEP
        self._in_head = False
        self._in_message = False
        self._head_size = 0
        self._continue_pending = False
        # requests parsed but not answered yet, behind the one ``_task`` is answering
        self._queue: deque[tuple] = deque()
        self._task: asyncio.Task | None = None
        # connection state
        self._discard = False  # input is ignored: closing, or lingering after an error
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
        service.connections.add(self)
        if service.stopping:
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
        self._parser = None  # type: ignore[assignment]
        self._body = None
        self._service._forget(self)

    def data_received(self, data: bytes) -> None:
        if self._discard:
            return
        self._idle_ticks = 0
        if self._in_head:  # a head arriving in pieces: bound what it may take
            self._head_size += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            reason = exc.__context__
            if isinstance(reason, _Reject):
                self._reject(reason.status, reason.message)
            else:
                logger.error("error parsing an HTTP request", exc_info=reason or exc)
                self._reject(500, "internal error parsing the request")
            return
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}")
            return
        except Exception:
            logger.exception("error parsing an HTTP request")
            self._reject(500, "internal error parsing the request")
            return
        if self._in_head and self._head_size > MAX_HEAD_SIZE:
            self._reject(431, f"the request head is larger than {MAX_HEAD_SIZE} bytes")

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

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = None
        self._body_size = 0
        self._in_head = True
        self._in_message = True
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = _HEADER_NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(_HEADER_NAMES) < _HEADER_NAMES_MAX:
                _HEADER_NAMES[name] = key
        headers = self._headers
        if key in headers:  # a repeated header: its values as one comma-separated list
            headers[key] = headers[key] + ", " + value.decode("latin-1")
        else:
            headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        raw = parser.get_method()
        method = _METHODS.get(raw) or raw.decode("latin-1")
        self._method = method
        headers = self._headers
        if not parser.should_keep_alive():
            self._keep = _CLOSE_AFTER
        elif "connection" in headers and parser.get_http_version() == "1.0":
            self._keep = _KEEP_10
        else:
            self._keep = _KEEP
        if ("upgrade" in headers or method == "CONNECT") and parser.should_upgrade():
            raise _Reject(400, "protocol upgrades are not supported")
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > self._max_body
            except ValueError:
                too_big = False  # llhttp has already refused a malformed length
            if too_big:
                raise _Reject(400, _too_big(self._max_body, int(length)))
        expect = headers.get("expect")
        if (
            expect is not None
            and expect.lower() == "100-continue"
            and parser.get_http_version() != "1.0"
        ):
            if self._task is None:
                self._transport.write(_CONTINUE)
            else:  # an earlier response goes first; _serve sends it when idle
                self._continue_pending = True

    def on_body(self, chunk: bytes) -> None:
        size = self._body_size + len(chunk)
        if size > self._max_body:
            raise _Reject(400, _too_big(self._max_body))
        self._body_size = size
        body = self._body
        if body is None:
            self._body = [chunk]
        else:
            body.append(chunk)

    def on_message_complete(self) -> None:
        self._in_message = False
        self._continue_pending = False
        url = self._url
        if url[:1] == b"/":
            query = url.find(b"?")  # the query string is not used by any endpoint
            path = (url if query < 0 else url[:query]).decode("latin-1")
        else:
            path = _other_path(url)
        body = self._body
        if body is None:
            data = b""
        elif len(body) == 1:
            data = body[0]
        else:
            data = b"".join(body)
        self._body = None  # an idle keep-alive connection holds no request body
        if self._discard:
            return  # an answer given earlier in this same read closed the connection
        keep = self._keep
        request = (self._method, path, self._headers, data, keep)
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

    def _answer_now(self, request: tuple) -> None:
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
            self._send(reply, method == "HEAD", keep)
        except Exception:
            logger.exception("error writing an HTTP response")
            self._transport.abort()

    async def _serve(self, request: tuple, pending: Coroutine[Any, Any, Reply] | None) -> None:
        """Answer ``request`` (whose answer may be ``pending`` already), then every queued
        one, in order; one task per busy spell."""
        queue = self._queue
        handle = self._handle
        try:
            if pending is None and self._write_paused:
                await self._writable()  # the peer is not reading what was answered inline
            while True:
                method, path, headers, body, keep = request
                if method is None:  # a rejection, queued behind earlier responses
                    self._send(path, False, _CLOSE_AFTER)
                    self._close(linger=True)
                    return
                try:
                    if pending is None:
                        answer = handle(method, path, headers, body)
                    else:
                        answer, pending = pending, None
                    reply = answer if isinstance(answer, Reply) else await answer
                except Exception as exc:  # handle() answers every error itself; belt and braces
                    reply = _internal_error(method, path, exc)
                if self._lost or self._transport.is_closing():
                    return  # cancelled, or aborted by the shutdown timeout
                if keep and self._stopping and not queue and not self._in_message:
                    keep = _CLOSE_AFTER  # shutting down: this is the last response
                self._send(reply, method == "HEAD", keep)
                if not keep:
                    self._close(linger=bool(queue) or self._in_message)
                    return
                if self._write_paused:
                    await self._writable()
                if not queue:
                    break
                request = queue.popleft()
                if self._reading_paused and len(queue) < PIPELINE_LIMIT // 2:
                    self._reading_paused = False
                    self._transport.resume_reading()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("error writing an HTTP response")
            if not self._lost:
                self._transport.abort()
            return
        finally:
            self._task = None
        # idle again
        if self._discard:
            return
        if self._continue_pending:
            self._continue_pending = False
            self._transport.write(_CONTINUE)
        if self._stopping and not self._in_message:
            self._close(linger=False)

    def _send(self, reply: Reply, head_only: bool, keep: int) -> None:
        body = reply.body
        size = len(body)
        status = reply.status
        by_type = _PREFIXES.get(status)
        prefix = by_type.get(reply.content_type) if by_type is not None else None
        if prefix is None:
            prefix = _prefix(status, reply.content_type)
        write = self._transport.write
        if reply.headers or keep != _KEEP:
            parts = [prefix, b"%d\r\n" % size]
            if reply.headers:
                parts.append(_header_lines(reply.headers))
            if keep == _CLOSE_AFTER:
                parts.append(_CLOSE)
            elif keep == _KEEP_10:
                parts.append(_KEEP_ALIVE)
            parts.append(b"\r\n")
            head = b"".join(parts)
            if head_only or not size:
                write(head)
            elif size <= JOIN_LIMIT:
                write(head + body)
            else:
                self._transport.writelines((head, body))
        elif head_only or not size:
            write(b"%b%d\r\n\r\n" % (prefix, size))
        elif size <= JOIN_LIMIT:
            write(b"%b%d\r\n\r\n%b" % (prefix, size, body))
        else:
            self._transport.writelines((b"%b%d\r\n\r\n" % (prefix, size), body))

    async def _writable(self) -> None:
        waiter = self._loop.create_future()
        self._drain_waiter = waiter
        try:
            await waiter
        finally:
            self._drain_waiter = None

    def _reject(self, status: int, message: str) -> None:
        """Answer a request that cannot be parsed or accepted, after earlier ones; then close."""
        self._discard = True
        self._in_message = False
        logger.debug("rejecting an HTTP request: %d %s", status, message)
        reply = error_reply(status, message)
        if self._task is None:
            self._send(reply, False, _CLOSE_AFTER)
            self._close(linger=True)
        else:
            self._queue.append((None, reply, None, None, _CLOSE_AFTER))

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
        if self._task is None and not self._in_message and not self._discard:
            self._close(linger=False)
            return True
        return False

    def _tick(self, limit: int) -> None:
        if self._task is not None:
            self._idle_ticks = 0
            return
        self._idle_ticks += 1
        if self._idle_ticks > limit and not self._discard:
            self._close(linger=False)

    def _abort(self) -> None:
        if not self._lost:
            self._transport.abort()


def _internal_error(method: str, path: str, exc: Exception) -> Reply:
    logger.error("unhandled error serving %s %s", method, path, exc_info=exc)
    return error_reply(500, f"internal error: {exc}")


def _other_path(url: bytes) -> str:
    """The path of an absolute-form (``http://host/path``) or ``*`` request target."""
    if url == b"*":
        return "*"
    try:
        path = httptools.parse_url(url).path
    except httptools.HttpParserInvalidURLError:
        return url.decode("latin-1")  # no endpoint has such a path: a 404
    return path.decode("latin-1") if path else "/"


class HttpService:
    """The HTTP/1.1 listener: accepts connections on a bound socket until ``shutdown``."""

    def __init__(
        self,
        handlers: RequestHandler,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        keep_alive_timeout: float | None = DEFAULT_KEEP_ALIVE_TIMEOUT,
    ) -> None:
        self.handlers = handlers
        self.max_body_size = max_body_size
        self.keep_alive_timeout = keep_alive_timeout
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpConnection] = set()
        self.stopping = False
        self.closing_keep_alive = False  # a shutdown delay: each response ends its connection
        self._server: asyncio.AbstractServer | None = None
        self._sockname: tuple = ()
        self._all_closed: asyncio.Future | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._tick_seconds = 1.0
        self._tick_limit = 0

    @classmethod
    async def start(
        cls,
        handlers: RequestHandler,
        sock: socket.socket,
        *,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        keep_alive_timeout: float | None = DEFAULT_KEEP_ALIVE_TIMEOUT,
        backlog: int = 2048,
        ssl: ssl_module.SSLContext | None = None,
        start_serving: bool = True,
    ) -> HttpService:
        """Serve on ``sock`` (bound and listening) from the running loop; HTTPS with ``ssl``.
        With ``start_serving`` false, connections are accepted only after :meth:`serve`."""
        service = cls(handlers, max_body_size=max_body_size, keep_alive_timeout=keep_alive_timeout)
        service._sockname = sock.getsockname()
        service._server = await service.loop.create_server(
            service._connection, sock=sock, backlog=backlog, ssl=ssl, start_serving=start_serving
        )
        if keep_alive_timeout:
            service._tick_seconds = min(1.0, keep_alive_timeout)
            service._tick_limit = max(1, round(keep_alive_timeout / service._tick_seconds))
            service._ticker = service.loop.call_later(service._tick_seconds, service._tick)
        return service

    @property
    def sockname(self) -> tuple:
        """The listening address, as ``socket.getsockname`` gives it."""
        return self._sockname

    def _connection(self) -> HttpConnection:
        return HttpConnection(self)

    def _forget(self, connection: HttpConnection) -> None:
        self.connections.discard(connection)
        waiter = self._all_closed
        if not self.connections and waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _tick(self) -> None:
        limit = self._tick_limit
        for connection in list(self.connections):
            connection._tick(limit)
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
