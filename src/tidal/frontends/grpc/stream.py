"""One ``ModelStreamInfer`` call: requests run concurrently, responses go back as they finish.

Each request on the stream becomes its own task, so many can be in flight at once (and be
batched together by the model's scheduler); a response carries its request's ``id`` so the
client can match it. A failed request answers ``error_message`` and the stream stays open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from tritonclient.grpc import service_pb2 as pb

from tidal.frontends.grpc.status import error_text
from tidal.protocol.grpc_response import stream_error

logger = logging.getLogger(__name__)

# Triton's stream parameters: a client that asks for final-response flags gets
# ``triton_final_response`` on the response that ends each request.
ENABLE_FINAL_RESPONSE = "triton_enable_empty_final_response"
FINAL_RESPONSE = "triton_final_response"

Infer = Callable[[pb.ModelInferRequest], Awaitable[pb.ModelInferResponse]]


class InferStream:
    """Serves one bidirectional stream; ``stop_reading`` lets it end cleanly at shutdown."""

    def __init__(self, infer: Infer) -> None:
        self._infer = infer
        self._responses: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        self._running: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None

    async def serve(
        self, requests: AsyncIterator[pb.ModelInferRequest]
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Yield responses until the client half-closes and every request is answered."""
        self._reader = asyncio.ensure_future(self._read(requests))
        pump = asyncio.ensure_future(self._finish_after(self._reader))
        try:
            while True:
                response = await self._responses.get()
                if response is None:
                    return
                yield response
        finally:
            # The client went away (or the call was cancelled): drop the work still pending,
            # so that queued requests leave their scheduler's queue.
            self._reader.cancel()
            pump.cancel()
            for task in list(self._running):
                task.cancel()

    def stop_reading(self) -> None:
        """Take no more requests; the stream ends once those in flight are answered."""
        if self._reader is not None:
            self._reader.cancel()

    async def _read(self, requests: AsyncIterator[pb.ModelInferRequest]) -> None:
        async for request in requests:
            task = asyncio.ensure_future(self._answer(request))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _finish_after(self, reader: asyncio.Task[None]) -> None:
        try:
            await asyncio.wait([reader])
            if not reader.cancelled() and reader.exception() is not None:
                logger.debug("stream ended by its reader: %r", reader.exception())
            while self._running:
                await asyncio.wait(list(self._running))
        finally:
            self._responses.put_nowait(None)

    async def _answer(self, request: pb.ModelInferRequest) -> None:
        try:
            response = pb.ModelStreamInferResponse(infer_response=await self._infer(request))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure is answered on the stream, which stays open
            response = stream_error(error_text(exc), request)
        if _wants_final_flag(request):
            # Every model here answers once, so that one response is also the final one.
            response.infer_response.parameters[FINAL_RESPONSE].bool_param = True
        self._responses.put_nowait(response)


def _wants_final_flag(request: pb.ModelInferRequest) -> bool:
    parameters = request.parameters
    return ENABLE_FINAL_RESPONSE in parameters and parameters[ENABLE_FINAL_RESPONSE].bool_param
