"""Instance workers: each model instance runs on its own thread, never on the event loop."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from tidal.backends.base import ExecuteResult, ModelInstance
from tidal.core.types import InferRequest


class InstancePool:
    """Hands batches to idle instances; at most one batch runs on an instance at a time."""

    def __init__(self, instances: Sequence[ModelInstance], name: str) -> None:
        if not instances:
            raise ValueError("an instance pool needs at least one instance")
        self._instances = list(instances)
        self._idle: deque[ModelInstance] = deque(instances)
        self._free = asyncio.Semaphore(len(instances))
        self._executor = ThreadPoolExecutor(
            max_workers=len(instances), thread_name_prefix=f"tidal-{name}"
        )

    @property
    def size(self) -> int:
        return len(self._instances)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    async def run(self, batch: Sequence[InferRequest]) -> ExecuteResult:
        """Run ``batch`` on the next idle instance, waiting for one if all are busy."""
        await self._free.acquire()
        instance = self._idle.popleft()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, instance.execute, batch)
        # The instance goes back only when its thread is done, even if the caller was
        # cancelled meanwhile: the shield keeps the running batch from being abandoned.
        future.add_done_callback(lambda _: self._release(instance))
        return await asyncio.shield(future)

    def _release(self, instance: ModelInstance) -> None:
        self._idle.append(instance)
        self._free.release()

    def close(self) -> None:
        """Stop the workers and close every instance (after the running batches end)."""
        self._executor.shutdown(wait=True)
        for instance in self._instances:
            instance.close()
