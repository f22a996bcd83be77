"""Instance workers: each model instance runs on its own thread, never on the event loop."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tidal.backends.base import ExecuteResult, ModelInstance
from tidal.core.types import InferRequest
from tidal.scheduling.statistics import Phases

# (results, the time the instance spent on them, by phase)
TimedResult = tuple[ExecuteResult, Phases]


class InstancePool:
    """Hands batches to idle instances; at most one batch runs on an instance at a time."""

    def __init__(self, instances: Sequence[ModelInstance], name: str) -> None:
        if not instances:
            raise ValueError("an instance pool needs at least one instance")
        self._instances = list(instances)
        self._idle: deque[ModelInstance] = deque(instances)
        self._waiters: deque[asyncio.Future[ModelInstance]] = deque()
        self._listeners: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=len(instances), thread_name_prefix=f"tidal-{name}"
        )

    @property
    def size(self) -> int:
        return len(self._instances)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def on_release(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` on the event loop each time an instance becomes idle."""
        self._listeners.append(listener)

    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the pool serves, remembered from the first call: on Linux
        ``asyncio.get_running_loop`` makes a getpid system call each time, which showed up
        as several percent of the event loop's time under load."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def try_acquire(self) -> ModelInstance | None:
        """An idle instance, reserved for the caller, or None when all are busy."""
        return self._idle.popleft() if self._idle else None

    async def acquire(self) -> ModelInstance:
        """An idle instance, waiting in FIFO order for one when all are busy."""
        if self._idle and not self._waiters:
            return self._idle.popleft()
        waiter = self.loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # handed over just as we gave up: pass it on
            raise

    def execute(self, instance: ModelInstance, batch: Sequence[InferRequest]) -> asyncio.Future:
        """Run ``batch`` on a reserved ``instance``; the future gives a ``TimedResult``.

        The instance goes back to the pool when its thread finishes, even if whoever awaits
        the future was cancelled meanwhile: a running batch is never abandoned.
        """
        future = self.loop().run_in_executor(self._executor, _timed_execute, instance, batch)
        future.add_done_callback(lambda _: self._release(instance))
        return future

    async def run(self, batch: Sequence[InferRequest]) -> TimedResult:
        """Acquire an instance, run ``batch`` on it, return its results."""
        instance = await self.acquire()
        return await asyncio.shield(self.execute(instance, batch))

    def _release(self, instance: ModelInstance) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(instance)
                return
        self._idle.append(instance)
        for listener in self._listeners:
            listener()

    def close(self) -> None:
        """Stop the workers and close every instance (after the running batches end)."""
        self._executor.shutdown(wait=True)
        for instance in self._instances:
            instance.close()


def _timed_execute(instance: ModelInstance, batch: Sequence[InferRequest]) -> TimedResult:
    start = time.perf_counter_ns()
    results = instance.execute(batch)
    total_ns = time.perf_counter_ns() - start
    # Read on the instance's own thread, before anyone else can run on it.
    split: tuple[int, int] | None = getattr(instance, "io_ns", None)
    if split is None:
        return results, Phases(0, total_ns, 0)
    input_ns, output_ns = split
    return results, Phases(input_ns, max(total_ns - input_ns - output_ns, 0), output_ns)
