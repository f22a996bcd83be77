"""Triton's dynamic batcher: requests wait in priority queues and leave in batches.

One task per model version forms batches on the event loop whenever an instance is idle:
it takes compatible requests (same inputs and non-batch shapes) in priority, then arrival,
order up to ``max_batch_size``, sends at once when a preferred size or the maximum is
reached, and otherwise waits up to ``max_queue_delay_microseconds`` for more. Queue policies
bound each priority level's length and each request's wait.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tidal.config.model_config import ModelConfig, QueuePolicy
from tidal.core.errors import ErrorCode, InferenceError
from tidal.core.types import InferRequest, InferResponse
from tidal.scheduling.instance_pool import InstancePool, TimedResult
from tidal.scheduling.statistics import (
    BACKEND,
    CANCELED,
    CURRENT_TIMING,
    OTHER,
    REJECTED,
    ModelStatistics,
    Phases,
)

_QUEUED, _TAKEN, _DONE = 0, 1, 2
_NO_PHASES = Phases(0, 0, 0)


@dataclass(slots=True, eq=False)
class _Pending:
    request: InferRequest
    future: asyncio.Future
    size: int
    signature: tuple
    level: int
    seq: int
    arrived: float  # loop time
    arrived_ns: int  # perf counter, for statistics
    timeout_action: str
    state: int = _QUEUED
    queue_ns: int = 0  # statistics: waiting time, execution time, why it failed
    phases: Phases = _NO_PHASES
    reason: int = BACKEND


@dataclass
class _Queue:
    policy: QueuePolicy
    entries: deque[_Pending] = field(default_factory=deque)
    live: int = 0


class DynamicBatchScheduler:
    """Batches requests for one model version across its instances."""

    def __init__(self, pool: InstancePool, config: ModelConfig, stats: ModelStatistics) -> None:
        batching = config.dynamic_batching
        assert batching is not None and config.max_batch_size > 0
        self._pool = pool
        self._name = config.name
        self._stats = stats
        self._max_batch = config.max_batch_size
        self._delay = batching.max_queue_delay_microseconds / 1e6
        self._preferred = frozenset(batching.preferred_batch_size)
        self._preserve_ordering = batching.preserve_ordering
        self._priority_levels = batching.priority_levels
        self._default_level = max(batching.default_priority_level, 1)
        levels = max(batching.priority_levels, 1)
        self._queues = [
            _Queue(batching.priority_queue_policy.get(level, batching.default_queue_policy))
            for level in range(1, levels + 1)
        ]
        # Requests whose timeout passed under timeout_action DELAY wait here, after all others.
        self._queues.append(_Queue(QueuePolicy()))
        self._deadlines: list[tuple[float, int, _Pending]] = []
        self._live = 0
        self._running = 0
        self._seq = 0
        self._next_delivery = 0
        self._held: dict[int, tuple[_Pending, Any]] = {}
        self._stopping = False
        self._changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        pool.on_release(self._changed.set)
        self.inflight = 0

    # -- the caller's side ---------------------------------------------------------------

    async def submit(self, request: InferRequest) -> InferResponse:
        stats = self._stats
        try:
            if self._stopping:
                raise InferenceError.unavailable(f"model '{self._name}' is unloading")
            level = self._level_of(request)
            queue = self._queues[level]
            policy = queue.policy
            if policy.max_queue_size and queue.live >= policy.max_queue_size:
                raise InferenceError.unavailable(
                    f"Exceeds maximum queue size for model '{self._name}'"
                )
            timeout_us = self._timeout_of(request, policy)
        except InferenceError as exc:
            stats.record_failure(REJECTED if exc.code is ErrorCode.UNAVAILABLE else OTHER, 0)
            raise
        loop = self._pool.loop()  # not asyncio.get_running_loop(): see InstancePool.loop
        now = loop.time()
        pending = _Pending(
            request=request,
            future=loop.create_future(),
            size=request.inputs[0].shape[0],
            signature=_signature(request),
            level=level,
            seq=self._seq,
            arrived=now,
            arrived_ns=time.perf_counter_ns(),
            timeout_action=policy.timeout_action,
        )
        self._seq += 1
        queue.entries.append(pending)
        queue.live += 1
        self._live += 1
        stats.pending += 1
        self.inflight += 1
        if timeout_us:
            heapq.heappush(self._deadlines, (now + timeout_us / 1e6, pending.seq, pending))
        self._changed.set()
        if self._task is None:
            self._task = loop.create_task(self._run(), name=f"tidal-batcher-{self._name}")
        try:
            response = await pending.future
        except asyncio.CancelledError:
            if pending.state == _QUEUED:  # never started: drop it from the queue
                self._remove(pending)
                self._deliver(pending, None)
            stats.record_failure(CANCELED, time.perf_counter_ns() - pending.arrived_ns)
            raise
        except BaseException:
            stats.record_failure(pending.reason, time.perf_counter_ns() - pending.arrived_ns)
            raise
        finally:
            self.inflight -= 1
        total_ns = time.perf_counter_ns() - pending.arrived_ns
        stats.record_success(total_ns, pending.queue_ns, pending.phases)
        timing = CURRENT_TIMING.get()
        if timing is not None:
            timing.add(pending.queue_ns, pending.phases)  # added: an ensemble's steps add up
        return response

    async def stop(self) -> None:
        """Refuse new requests, run every queued one, then close the instances."""
        self._stopping = True
        self._changed.set()
        if self._task is not None:
            await self._task
        await asyncio.get_running_loop().run_in_executor(None, self._pool.close)

    def _level_of(self, request: InferRequest) -> int:
        priority = request.parameters.get("priority", 0)
        if not isinstance(priority, int) or isinstance(priority, bool) or priority < 0:
            raise InferenceError.invalid(
                f"request priority must be a non-negative integer, got {priority!r}"
            )
        if not self._priority_levels:
            return 0
        if priority > self._priority_levels:
            raise InferenceError.invalid(
                f"request priority {priority} is above the {self._priority_levels} priority "
                f"levels of model '{self._name}'"
            )
        return (priority or self._default_level) - 1

    def _timeout_of(self, request: InferRequest, policy: QueuePolicy) -> int:
        timeout = policy.default_timeout_microseconds
        override = request.parameters.get("timeout")
        if override is not None and policy.allow_timeout_override:
            if not isinstance(override, int) or isinstance(override, bool) or override < 0:
                raise InferenceError.invalid(
                    f"request timeout must be a non-negative integer (microseconds), got "
                    f"{override!r}"
                )
            # Triton uses the shorter of the request's and the policy's timeouts.
            timeout = min(timeout, override) if timeout and override else timeout or override
        return timeout

    # -- the batcher task ----------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            now = loop.time()
            self._expire(now)
            if self._stopping and not self._live and not self._running:
                return
            wake_at = self._deadlines[0][0] if self._deadlines else None
            if self._live and self._pool.idle_count:
                batch, ready_at = self._form(now)
                if batch:
                    self._dispatch(batch, loop)
                    continue
                if ready_at is not None:
                    wake_at = ready_at if wake_at is None else min(wake_at, ready_at)
            self._arm_timer(loop, wake_at)
            await self._changed.wait()

    def _arm_timer(self, loop: asyncio.AbstractEventLoop, when: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = loop.call_at(when, self._changed.set)

    def _form(self, now: float) -> tuple[list[_Pending], float | None]:
        """The batch to send now, or none and the loop time at which to look again."""
        taken: list[_Pending] = []
        total = 0
        signature = None
        for queue in self._queues:
            entries = queue.entries
            while entries and entries[0].state != _QUEUED:
                entries.popleft()
            for pending in entries:
                if pending.state != _QUEUED:
                    continue
                if signature is None:
                    signature = pending.signature
                # Stop at the first request that cannot join, so none is overtaken.
                if pending.signature != signature or total + pending.size > self._max_batch:
                    return self._decide(taken, total, now, full=True)
                taken.append(pending)
                total += pending.size
                if total == self._max_batch:
                    return taken, None
        return self._decide(taken, total, now, full=False)

    def _decide(
        self, taken: list[_Pending], total: int, now: float, *, full: bool
    ) -> tuple[list[_Pending], float | None]:
        if not taken:
            return [], None
        if full or total in self._preferred:
            return self._cut_to_preferred(taken) if full else taken, None
        ready_at = min(p.arrived for p in taken) + self._delay
        if now >= ready_at:
            return self._cut_to_preferred(taken), None
        return [], ready_at

    def _cut_to_preferred(self, taken: list[_Pending]) -> list[_Pending]:
        """The longest prefix whose size is a preferred batch size, else all of it."""
        if not self._preferred:
            return taken
        total = sum(p.size for p in taken)
        for end in range(len(taken), 0, -1):
            if total in self._preferred:
                return taken[:end]
            total -= taken[end - 1].size
        return taken

    def _dispatch(self, batch: list[_Pending], loop: asyncio.AbstractEventLoop) -> None:
        instance = self._pool.try_acquire()
        assert instance is not None
        started = time.perf_counter_ns()
        for pending in batch:
            self._remove(pending)
            pending.state = _TAKEN
            pending.queue_ns = started - pending.arrived_ns
        self._running += 1
        future = self._pool.execute(instance, [p.request for p in batch])
        future.add_done_callback(lambda done: self._complete(batch, done))

    def _complete(self, batch: list[_Pending], done: asyncio.Future) -> None:
        self._running -= 1
        if done.cancelled() or done.exception() is not None:
            error = InferenceError.internal(
                f"model '{self._name}' failed to execute a batch: "
                f"{'cancelled' if done.cancelled() else done.exception()}"
            )
            results: list[Any] = [error] * len(batch)
        else:
            timed: TimedResult = done.result()
            results, phases = timed
            answered = 0  # samples that got a response: Triton counts successful inferences
            for pending, result in zip(batch, results, strict=True):
                pending.phases = phases
                if not isinstance(result, BaseException):
                    answered += pending.size
            if answered:
                self._stats.record_execution(answered, phases)
        for pending, result in zip(batch, results, strict=True):
            self._deliver(pending, result)
        self._changed.set()

    def _expire(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, pending = heapq.heappop(self._deadlines)
            if pending.state != _QUEUED:
                continue
            if pending.timeout_action == "DELAY":
                self._queues[pending.level].entries.remove(pending)
                self._queues[pending.level].live -= 1
                pending.level = len(self._queues) - 1
                self._queues[-1].entries.append(pending)
                self._queues[-1].live += 1
                continue
            self._remove(pending)
            pending.reason = REJECTED
            self._deliver(pending, InferenceError.unavailable("Request timeout expired"))

    def _remove(self, pending: _Pending) -> None:
        """Take a queued request out of the counts; its deque entry is skipped lazily."""
        pending.state = _DONE
        self._queues[pending.level].live -= 1
        self._live -= 1
        self._stats.pending -= 1
        self._changed.set()

    def _deliver(self, pending: _Pending, result: Any) -> None:
        pending.state = _DONE
        if not self._preserve_ordering:
            _resolve(pending.future, result)
            return
        # Responses leave in arrival order: hold each until every earlier one has left.
        self._held[pending.seq] = (pending, result)
        while self._next_delivery in self._held:
            held, held_result = self._held.pop(self._next_delivery)
            _resolve(held.future, held_result)
            self._next_delivery += 1


def _resolve(future: asyncio.Future, result: Any) -> None:
    if future.done() or result is None:
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _signature(request: InferRequest) -> tuple:
    """What must match for requests to share an execution: inputs, types, non-batch dims."""
    return tuple(sorted((t.name, t.datatype.value, t.shape[1:]) for t in request.inputs))
