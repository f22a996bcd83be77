"""The scheduler for models without dynamic batching: each request runs as it comes."""

from __future__ import annotations

import asyncio
import time

from tidal.config.model_config import ModelConfig
from tidal.core.errors import InferenceError
from tidal.core.types import InferRequest, InferResponse
from tidal.scheduling.admission import Admission
from tidal.scheduling.instance_pool import InstancePool
from tidal.scheduling.statistics import BACKEND, CANCELED, CURRENT_TIMING, ModelStatistics


class DirectScheduler:
    """Runs every request alone, concurrently across the model's instances; a request whose
    caller is cancelled while it waits for an instance never runs."""

    def __init__(self, pool: InstancePool, config: ModelConfig, stats: ModelStatistics) -> None:
        self._pool = pool
        self._batching = config.batching
        self._stats = stats
        self._admission = Admission(config.name, stats)

    @property
    def inflight(self) -> int:
        return self._admission.count

    async def submit(self, request: InferRequest) -> InferResponse:
        stats = self._stats
        self._admission.enter()
        arrived = time.perf_counter_ns()
        try:
            stats.pending += 1
            try:
                instance = await self._pool.acquire()
            finally:
                stats.pending -= 1
            started = time.perf_counter_ns()
            (result,), phases = await asyncio.shield(self._pool.execute(instance, [request]))
            if isinstance(result, InferenceError):
                raise result
            size = request.inputs[0].shape[0] if self._batching and request.inputs else 1
            stats.record_execution(size, phases)
            queue_ns = started - arrived
            stats.record_success(time.perf_counter_ns() - arrived, queue_ns, phases)
            timing = CURRENT_TIMING.get()
            if timing is not None:
                timing.add(queue_ns, phases)  # added: an ensemble's steps add up
            return result
        except asyncio.CancelledError:
            stats.record_failure(CANCELED, time.perf_counter_ns() - arrived)
            raise
        except BaseException:  # the model's error for this request, or its execution failed
            stats.record_failure(BACKEND, time.perf_counter_ns() - arrived)
            raise
        finally:
            self._admission.leave()

    async def stop(self) -> None:
        await self._admission.close()
        await asyncio.get_running_loop().run_in_executor(None, self._pool.close)
