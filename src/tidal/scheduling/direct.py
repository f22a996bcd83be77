"""The scheduler for models without dynamic batching: each request runs as it comes."""

from __future__ import annotations

import asyncio
import time

from tidal.config.model_config import ModelConfig
from tidal.core.errors import InferenceError
from tidal.core.types import InferRequest, InferResponse
from tidal.scheduling.instance_pool import InstancePool
from tidal.scheduling.statistics import ModelStatistics


class DirectScheduler:
    """Runs every request alone, concurrently across the model's instances; a request whose
    caller is cancelled while it waits for an instance never runs."""

    def __init__(self, pool: InstancePool, config: ModelConfig, stats: ModelStatistics) -> None:
        self._pool = pool
        self._model_name = config.name
        self._batching = config.batching
        self._stats = stats
        self._stopping = False
        self._drained = asyncio.Event()
        self._drained.set()
        self.inflight = 0

    async def submit(self, request: InferRequest) -> InferResponse:
        if self._stopping:
            raise InferenceError.unavailable(f"model '{self._model_name}' is unloading")
        arrived = time.perf_counter_ns()
        self.inflight += 1
        self._drained.clear()
        ok = False
        try:
            instance = await self._pool.acquire()
            started = time.perf_counter_ns()
            (result,), infer_ns = await asyncio.shield(self._pool.execute(instance, [request]))
            self._stats.queue.add(started - arrived)
            size = request.inputs[0].shape[0] if self._batching and request.inputs else 1
            self._stats.record_execution(size, 1, infer_ns)
            if isinstance(result, InferenceError):
                raise result
            ok = True
            return result
        finally:
            self._stats.record_request(ok, time.perf_counter_ns() - arrived)
            self.inflight -= 1
            if self.inflight == 0:
                self._drained.set()

    async def stop(self) -> None:
        self._stopping = True
        await self._drained.wait()
        await asyncio.get_running_loop().run_in_executor(None, self._pool.close)
