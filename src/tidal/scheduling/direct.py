"""The scheduler for models without dynamic batching: each request runs as it comes."""

from __future__ import annotations

import asyncio

from tidal.core.errors import InferenceError
from tidal.core.types import InferRequest, InferResponse
from tidal.scheduling.instance_pool import InstancePool


class DirectScheduler:
    """Runs every request alone, concurrently across the model's instances."""

    def __init__(self, pool: InstancePool, model_name: str) -> None:
        self._pool = pool
        self._model_name = model_name
        self._stopping = False
        self._drained = asyncio.Event()
        self._drained.set()
        self.inflight = 0

    async def submit(self, request: InferRequest) -> InferResponse:
        if self._stopping:
            raise InferenceError.unavailable(f"model '{self._model_name}' is unloading")
        self.inflight += 1
        self._drained.clear()
        try:
            (result,) = await self._pool.run([request])
        finally:
            self.inflight -= 1
            if self.inflight == 0:
                self._drained.set()
        if isinstance(result, InferenceError):
            raise result
        return result

    async def stop(self) -> None:
        self._stopping = True
        await self._drained.wait()
        await asyncio.get_running_loop().run_in_executor(None, self._pool.close)
