"""Per-stream state of an HTTP/2 connection: one call's stream and a streaming call's requests."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from tidal.frontends.grpc.h2.context import CallContext
from tidal.frontends.grpc.h2.limits import STREAM_WINDOW
from tidal.frontends.grpc.h2.messages import MessageReader
from tidal.frontends.grpc.h2.methods import Method


class Requests:
    """The request iterator of a bidirectional stream, fed by the connection."""

    __slots__ = ("_done", "_items", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._done = False

    def __aiter__(self) -> Requests:
        return self

    async def __anext__(self) -> Any:
        while not self._items:
            if self._done:
                raise StopAsyncIteration
            waiter = self._loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def put(self, item: Any) -> None:
        self._items.append(item)
        self._wake()

    def close(self) -> None:
        self._done = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Stream:
    """One call's HTTP/2 stream."""

    __slots__ = (
        "content_length",
        "context",
        "drained",
        "expired",
        "headers_sent",
        "id",
        "message",
        "method",
        "pending",
        "reader",
        "received",
        "recv_window",
        "remote_closed",
        "requests",
        "send_window",
        "task",
        "timer",
        "trailer",
    )

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.send_window = send_window
        self.recv_window = STREAM_WINDOW
        self.method: Method | None = None
        self.context: CallContext | None = None
        self.reader: MessageReader | None = None
        self.message: bytes | None = None  # a unary call's request
        self.requests: Requests | None = None  # a streaming call's requests
        self.remote_closed = False
        self.headers_sent = False
        self.expired = False
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        # response DATA waiting for flow-control window, then the trailers block (unencoded:
        # TRAILERS_OK or literals), encoded when it is sent
        self.pending: deque[memoryview] = deque()
        self.trailer: bytes | None = None
        self.drained: asyncio.Future[None] | None = None
        self.content_length = -1  # the request's content-length (-1: none), and its DATA
        self.received = 0  # bytes so far, counted only when there is a content-length
