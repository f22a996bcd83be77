"""The instance pool and the direct scheduler, with plain in-process fake instances."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from tidal.config import DynamicBatching, ModelConfig, TensorConfig
from tidal.core import (
    DataType,
    ErrorCode,
    InferenceError,
    InferInput,
    InferRequest,
    InferResponse,
)
from tidal.scheduling.direct import DirectScheduler
from tidal.scheduling.dynamic_batcher import DynamicBatchScheduler
from tidal.scheduling.factory import build_scheduler
from tidal.scheduling.instance_pool import InstancePool
from tidal.scheduling.statistics import ModelStatistics

from ..waiting import until

TIMEOUT_S = 5.0


class Log:
    """What every fake instance did, in order, across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.active = 0
        self.max_active = 0

    def add(self, kind: str, what: str) -> None:
        with self.lock:
            self.events.append((kind, what))

    def of(self, kind: str) -> list[str]:
        with self.lock:
            return [what for k, what in self.events if k == kind]


class FakeInstance:
    """Answers each request with a response whose id names the instance and the request.

    ``gate`` (when given) holds every execution until it is set; ``barrier`` (when given)
    makes executions meet there, so they provably overlap; ``fail`` makes requests whose id
    is in it return an error, and ``explode`` makes ``execute`` raise."""

    def __init__(self, name, log, *, gate=None, barrier=None, delay=0.0, fail=(), explode=False):
        self.name = name
        self.log = log
        self.gate = gate
        self.barrier = barrier
        self.delay = delay
        self.fail = set(fail)
        self.explode = explode
        self.running = 0
        self.max_running = 0
        self.started = threading.Event()
        self.closed = 0

    def execute(self, batch):
        ids = ",".join(str(r.id) for r in batch)
        with self.log.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.log.active += 1
            self.log.max_active = max(self.log.max_active, self.log.active)
            self.log.events.append(("start", ids))
        self.started.set()
        try:
            if self.gate is not None and not self.gate.wait(TIMEOUT_S):
                raise RuntimeError("gate never opened")
            if self.barrier is not None:
                self.barrier.wait(TIMEOUT_S)  # BrokenBarrierError unless all parties overlap
            if self.delay:
                time.sleep(self.delay)
            if self.explode:
                raise RuntimeError(f"{self.name} exploded")
            return [
                InferenceError.invalid(f"bad {r.id}")
                if r.id in self.fail
                else InferResponse(r.model_name, 1, [], id=f"{self.name}:{r.id}")
                for r in batch
            ]
        finally:
            with self.log.lock:
                self.running -= 1
                self.log.active -= 1
                self.log.events.append(("end", ids))

    def close(self):
        self.closed += 1
        self.log.add("close", self.name)


def request(request_id, batch=1):
    data = np.zeros((batch, 2), np.float32)
    return InferRequest("m", [InferInput("x", DataType.FP32, data.shape, data)], id=request_id)


def run(coro):
    async def bounded():
        return await asyncio.wait_for(coro, TIMEOUT_S * 2)

    return asyncio.run(bounded())


CONFIG = ModelConfig(
    name="m",
    max_batch_size=8,
    inputs=(TensorConfig("x", DataType.FP32, (2,)),),
    outputs=(TensorConfig("y", DataType.FP32, (2,)),),
)


# -- InstancePool -------------------------------------------------------------------------------


def test_pool_needs_an_instance():
    with pytest.raises(ValueError) as info:
        InstancePool([], name="m")
    assert str(info.value) == "an instance pool needs at least one instance"


def test_run_returns_results_and_execution_time():
    log = Log()

    async def scenario():
        pool = InstancePool([FakeInstance("i0", log, delay=0.01)], name="m")
        assert (pool.size, pool.idle_count) == (1, 1)
        results, phases = await pool.run([request("a"), request("b")])
        assert pool.idle_count == 1
        pool.close()
        return results, phases

    results, phases = run(scenario())
    assert [r.id for r in results] == ["i0:a", "i0:b"]
    # an instance without io_ns: all of its time is the model's run
    assert (phases.input_ns, phases.output_ns) == (0, 0)
    assert phases.infer_ns >= 10_000_000


def test_an_instance_that_times_its_inputs_and_outputs_has_them_apart():
    log = Log()
    instance = FakeInstance("i0", log, delay=0.02)
    instance.io_ns = (3_000_000, 2_000_000)  # what its execute says it spent on each

    async def scenario():
        pool = InstancePool([instance], name="m")
        _, phases = await pool.run([request("a")])
        pool.close()
        return phases

    phases = run(scenario())
    assert (phases.input_ns, phases.output_ns) == (3_000_000, 2_000_000)
    assert phases.infer_ns >= 15_000_000  # the rest of the 20 ms execute


def test_concurrency_is_limited_to_the_instance_count():
    log = Log()
    barrier = threading.Barrier(2)
    instances = [FakeInstance(f"i{n}", log, barrier=barrier, delay=0.01) for n in range(2)]

    async def scenario():
        pool = InstancePool(instances, name="m")
        results = await asyncio.gather(*(pool.run([request(str(n))]) for n in range(6)))
        pool.close()
        return [r for (batch, _) in results for r in batch]

    responses = run(scenario())
    assert sorted(r.id.split(":")[1] for r in responses) == ["0", "1", "2", "3", "4", "5"]
    assert log.max_active == 2
    assert [i.max_running for i in instances] == [1, 1]
    assert {r.id.split(":")[0] for r in responses} == {"i0", "i1"}


def test_waiting_callers_are_served_in_arrival_order():
    log = Log()
    gate = threading.Event()
    instance = FakeInstance("i0", log, gate=gate)

    async def scenario():
        pool = InstancePool([instance], name="m")
        tasks = []
        for name in "abcd":
            tasks.append(asyncio.create_task(pool.run([request(name)])))
            await asyncio.sleep(0)
        await until(instance.started.is_set, "the first execution")
        gate.set()
        await asyncio.gather(*tasks)
        pool.close()

    run(scenario())
    assert log.of("start") == ["a", "b", "c", "d"]


def test_instance_is_not_reused_while_its_thread_runs_after_cancellation():
    log = Log()
    gate = threading.Event()
    instance = FakeInstance("i0", log, gate=gate)

    async def scenario():
        pool = InstancePool([instance], name="m")
        first = asyncio.create_task(pool.run([request("a")]))
        await until(instance.started.is_set, "the first execution")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert pool.idle_count == 0  # the thread still holds the instance
        second = asyncio.create_task(pool.run([request("b")]))
        await asyncio.sleep(0.05)
        assert not second.done()
        assert log.of("start") == ["a"]
        gate.set()
        (response,), _ = await second
        assert pool.idle_count == 1
        pool.close()
        return response

    response = run(scenario())
    assert response.id == "i0:b"
    assert log.events[:3] == [("start", "a"), ("end", "a"), ("start", "b")]
    assert log.max_active == 1


def test_caller_cancelled_while_waiting_never_runs():
    log = Log()
    gate = threading.Event()
    instance = FakeInstance("i0", log, gate=gate)

    async def scenario():
        pool = InstancePool([instance], name="m")
        first = asyncio.create_task(pool.run([request("a")]))
        await until(instance.started.is_set, "the first execution")
        waiting = asyncio.create_task(pool.run([request("b")]))
        third = asyncio.create_task(pool.run([request("c")]))
        await asyncio.sleep(0.01)
        waiting.cancel()
        gate.set()
        await first
        (response,), _ = await third
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pool.idle_count == 1
        pool.close()
        return response

    assert run(scenario()).id == "i0:c"
    assert log.of("start") == ["a", "c"]


def test_execute_failure_reaches_the_caller_and_frees_the_instance():
    log = Log()
    instance = FakeInstance("i0", log, explode=True)

    async def scenario():
        pool = InstancePool([instance], name="m")
        with pytest.raises(RuntimeError, match="i0 exploded"):
            await pool.run([request("a")])
        assert pool.idle_count == 1
        instance.explode = False
        (response,), _ = await pool.run([request("b")])
        pool.close()
        return response

    assert run(scenario()).id == "i0:b"


def test_try_acquire_reserves_and_execute_releases():
    log = Log()
    released = []

    async def scenario():
        pool = InstancePool([FakeInstance("i0", log)], name="m")
        pool.on_release(lambda: released.append(pool.idle_count))
        instance = pool.try_acquire()
        assert instance is not None
        assert pool.try_acquire() is None
        assert pool.idle_count == 0
        (response,), _ = await pool.execute(instance, [request("a")])
        assert pool.idle_count == 1
        pool.close()
        return response

    assert run(scenario()).id == "i0:a"
    assert released == [1]


def test_release_listener_fires_only_when_an_instance_goes_idle():
    log = Log()
    gate = threading.Event()
    instance = FakeInstance("i0", log, gate=gate)
    released = []

    async def scenario():
        pool = InstancePool([instance], name="m")
        pool.on_release(lambda: released.append("idle"))
        first = asyncio.create_task(pool.run([request("a")]))
        await until(instance.started.is_set, "the first execution")
        second = asyncio.create_task(pool.run([request("b")]))
        await asyncio.sleep(0.01)
        gate.set()
        await asyncio.gather(first, second)
        pool.close()

    run(scenario())
    assert released == ["idle"]  # "a" handed the instance straight to "b"


def test_close_waits_for_running_batches_then_closes_every_instance():
    log = Log()
    gate = threading.Event()
    busy = FakeInstance("i0", log, gate=gate)
    idle = FakeInstance("i1", log)

    async def scenario():
        pool = InstancePool([busy, idle], name="m")
        running = asyncio.create_task(pool.run([request("a")]))
        await until(busy.started.is_set, "the execution")
        closing = asyncio.create_task(asyncio.to_thread(pool.close))
        await asyncio.sleep(0.05)
        assert not closing.done()
        assert (busy.closed, idle.closed) == (0, 0)
        gate.set()
        await closing
        await running

    run(scenario())
    assert (busy.closed, idle.closed) == (1, 1)
    assert log.events == [("start", "a"), ("end", "a"), ("close", "i0"), ("close", "i1")]


# -- DirectScheduler ----------------------------------------------------------------------------


def test_direct_scheduler_returns_the_response_and_counts_it():
    log = Log()
    stats = ModelStatistics()

    async def scenario():
        pool = InstancePool([FakeInstance("i0", log)], name="m")
        scheduler = DirectScheduler(pool, CONFIG, stats)
        response = await scheduler.submit(request("a", batch=3))
        await scheduler.stop()
        return response

    assert run(scenario()).id == "i0:a"
    assert (stats.execution_count, stats.inference_count) == (1, 3)
    assert (stats.success.count, stats.fail.count, stats.queue.count) == (1, 0, 1)
    assert stats.compute_infer.count == 1
    assert list(stats.batches) == [3]


def test_direct_scheduler_counts_one_inference_for_an_unbatched_model():
    log = Log()
    stats = ModelStatistics()
    config = ModelConfig(name="m", inputs=CONFIG.inputs, outputs=CONFIG.outputs)

    async def scenario():
        pool = InstancePool([FakeInstance("i0", log)], name="m")
        scheduler = DirectScheduler(pool, config, stats)
        await scheduler.submit(request("a", batch=3))
        await scheduler.stop()

    run(scenario())
    assert (stats.execution_count, stats.inference_count) == (1, 1)


def test_direct_scheduler_raises_the_request_error():
    log = Log()
    stats = ModelStatistics()

    async def scenario():
        pool = InstancePool([FakeInstance("i0", log, fail={"bad"})], name="m")
        scheduler = DirectScheduler(pool, CONFIG, stats)
        with pytest.raises(InferenceError) as info:
            await scheduler.submit(request("bad"))
        await scheduler.stop()
        return info.value

    error = run(scenario())
    assert (error.code, error.message) == (ErrorCode.INVALID_ARG, "bad bad")
    assert (stats.success.count, stats.fail.count) == (0, 1)


def test_direct_scheduler_runs_requests_concurrently_across_instances():
    log = Log()
    barrier = threading.Barrier(3)
    instances = [FakeInstance(f"i{n}", log, barrier=barrier, delay=0.01) for n in range(3)]

    async def scenario():
        scheduler = DirectScheduler(InstancePool(instances, name="m"), CONFIG, ModelStatistics())
        responses = await asyncio.gather(*(scheduler.submit(request(str(n))) for n in range(9)))
        await scheduler.stop()
        return responses

    responses = run(scenario())
    assert len(responses) == 9
    assert log.max_active == 3
    assert all(i.max_running == 1 for i in instances)


def test_stop_drains_accepted_requests_and_refuses_new_ones():
    log = Log()
    gate = threading.Event()
    instances = [FakeInstance(f"i{n}", log, gate=gate) for n in range(2)]

    async def scenario():
        scheduler = DirectScheduler(InstancePool(instances, name="m"), CONFIG, ModelStatistics())
        accepted = [asyncio.create_task(scheduler.submit(request(n))) for n in ("a", "b")]
        await until(lambda: all(i.started.is_set() for i in instances), "both executions")
        assert scheduler.inflight == 2
        stopping = asyncio.create_task(scheduler.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()
        with pytest.raises(InferenceError) as info:
            await scheduler.submit(request("late"))
        assert info.value.code is ErrorCode.UNAVAILABLE
        assert info.value.message == "model 'm' is unloading"
        assert [i.closed for i in instances] == [0, 0]
        gate.set()
        await stopping
        assert scheduler.inflight == 0
        return [task.result() for task in accepted]

    responses = run(scenario())
    assert sorted(r.id.split(":")[1] for r in responses) == ["a", "b"]
    assert [i.closed for i in instances] == [1, 1]
    ends = [n for n, (kind, _) in enumerate(log.events) if kind == "end"]
    closes = [n for n, (kind, _) in enumerate(log.events) if kind == "close"]
    assert max(ends) < min(closes)
    assert sorted(log.of("start")) == ["a", "b"]


def test_stop_without_requests_closes_the_instances():
    log = Log()
    instance = FakeInstance("i0", log)

    async def scenario():
        scheduler = DirectScheduler(InstancePool([instance], name="m"), CONFIG, ModelStatistics())
        await scheduler.stop()

    run(scenario())
    assert instance.closed == 1


def test_stop_after_a_cancelled_request_waits_for_its_thread():
    log = Log()
    gate = threading.Event()
    instance = FakeInstance("i0", log, gate=gate)

    async def scenario():
        scheduler = DirectScheduler(InstancePool([instance], name="m"), CONFIG, ModelStatistics())
        task = asyncio.create_task(scheduler.submit(request("a")))
        await until(instance.started.is_set, "the execution")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert scheduler.inflight == 0
        stopping = asyncio.create_task(scheduler.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()
        assert instance.closed == 0
        gate.set()
        await stopping

    run(scenario())
    assert log.events == [("start", "a"), ("end", "a"), ("close", "i0")]


def test_request_cancelled_while_queued_never_runs():
    log = Log()
    gate = threading.Event()
    instance = FakeInstance("i0", log, gate=gate)

    async def scenario():
        scheduler = DirectScheduler(InstancePool([instance], name="m"), CONFIG, ModelStatistics())
        first = asyncio.create_task(scheduler.submit(request("a")))
        await until(instance.started.is_set, "the execution")
        queued = asyncio.create_task(scheduler.submit(request("b")))
        await until(lambda: scheduler.inflight == 2, "the queued request")
        queued.cancel()
        gate.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await queued
        await scheduler.stop()

    run(scenario())
    assert log.of("start") == ["a"]


# -- build_scheduler ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_batch_size", "dynamic_batching", "kind"),
    [
        (8, None, DirectScheduler),
        (0, None, DirectScheduler),
        (0, DynamicBatching(), DirectScheduler),
        (8, DynamicBatching(), DynamicBatchScheduler),
    ],
)
def test_build_scheduler_picks_by_config(max_batch_size, dynamic_batching, kind):
    config = ModelConfig(
        name="m",
        max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching,
        inputs=CONFIG.inputs,
        outputs=CONFIG.outputs,
    )

    async def scenario():
        pool = InstancePool([FakeInstance("i0", Log())], name="m")
        scheduler = build_scheduler(config, pool, ModelStatistics())
        await scheduler.stop()
        return scheduler

    assert type(run(scenario())) is kind
