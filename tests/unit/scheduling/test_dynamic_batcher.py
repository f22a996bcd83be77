"""The dynamic batcher's rules, made deterministic with instances the test opens and closes.

Each gated instance records the batch it was given and holds its thread until the test lets
that batch go, so queue order, priorities and ordering can be observed exactly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from tidal.config.model_config import (
    DynamicBatching,
    ModelConfig,
    QueuePolicy,
    TensorConfig,
)
from tidal.core.datatypes import DataType
from tidal.core.errors import ErrorCode, InferenceError
from tidal.core.types import InferInput, InferOutput, InferRequest, InferResponse
from tidal.scheduling.dynamic_batcher import DynamicBatchScheduler
from tidal.scheduling.instance_pool import InstancePool
from tidal.scheduling.statistics import ModelStatistics

from ..waiting import until


class GatedInstance:
    """Echoes INPUT0; a batch runs only once the test opens the gate of its first value."""

    def __init__(self, log: list[list[float]], gates: dict[float, threading.Event]) -> None:
        self.log = log
        self.gates = gates

    def execute(self, batch: Sequence[InferRequest]) -> list[InferResponse | InferenceError]:
        values = [float(r.inputs[0].data[0, 0]) for r in batch]
        self.log.append(values)
        gate = self.gates.get(values[0])
        if gate is not None:
            assert gate.wait(10), "test never opened the gate"
        return [
            InferResponse(
                r.model_name, 1, [InferOutput("OUTPUT0", DataType.FP32, (1, 1), r.inputs[0].data)]
            )
            for r in batch
        ]

    def close(self) -> None:
        pass


def _config(max_batch: int = 4, **batching: object) -> ModelConfig:
    tensor = TensorConfig("INPUT0", DataType.FP32, (1,))
    return ModelConfig(
        name="gated",
        max_batch_size=max_batch,
        inputs=(tensor,),
        outputs=(TensorConfig("OUTPUT0", DataType.FP32, (1,)),),
        dynamic_batching=DynamicBatching(**batching),  # type: ignore[arg-type]
    )


def _request(value: float, **parameters: object) -> InferRequest:
    data = np.array([[value]], dtype=np.float32)
    return InferRequest(
        "gated", [InferInput("INPUT0", DataType.FP32, (1, 1), data)], parameters=dict(parameters)
    )


class Harness:
    def __init__(self, config: ModelConfig, instances: int = 1) -> None:
        self.log: list[list[float]] = []
        self.gates: dict[float, threading.Event] = {}
        pool = InstancePool(
            [GatedInstance(self.log, self.gates) for _ in range(instances)], "gated"
        )
        self.stats = ModelStatistics()
        self.scheduler = DynamicBatchScheduler(pool, config, self.stats)

    def gate(self, value: float) -> threading.Event:
        self.gates[value] = threading.Event()
        return self.gates[value]

    def submit(self, value: float, **parameters: object) -> asyncio.Task:
        return asyncio.ensure_future(self.scheduler.submit(_request(value, **parameters)))


def _run(coroutine) -> None:
    asyncio.run(coroutine)


def test_waits_for_the_queue_delay_then_sends_what_is_there():
    async def scenario() -> None:
        harness = Harness(_config(max_batch=4, max_queue_delay_microseconds=150_000))
        loop = asyncio.get_running_loop()
        started = loop.time()
        first, second = harness.submit(1), harness.submit(2)
        await asyncio.gather(first, second)
        assert loop.time() - started >= 0.14
        assert harness.log == [[1.0, 2.0]]
        await harness.scheduler.stop()

    _run(scenario())


def test_higher_priority_runs_first():
    async def scenario() -> None:
        harness = Harness(_config(max_batch=1, priority_levels=2, default_priority_level=2))
        busy = harness.gate(0)
        blocker = harness.submit(0)
        await until(lambda: harness.log == [[0.0]])
        low = harness.submit(1)  # default level 2
        high = harness.submit(2, priority=1)
        await until(lambda: harness.scheduler.inflight == 3, "both queued")
        busy.set()
        await asyncio.gather(blocker, low, high)
        assert harness.log == [[0.0], [2.0], [1.0]]
        await harness.scheduler.stop()

    _run(scenario())


def test_preserve_ordering_holds_a_fast_response_behind_a_slow_one():
    async def scenario() -> None:
        harness = Harness(_config(max_batch=1, preserve_ordering=True), instances=2)
        slow_gate, fast_gate = harness.gate(1), harness.gate(2)
        slow, fast = harness.submit(1), harness.submit(2)
        await until(lambda: len(harness.log) == 2)
        fast_gate.set()
        await asyncio.sleep(0.1)
        assert not fast.done(), "the second response must wait for the first"
        slow_gate.set()
        done_order: list[str] = []
        slow.add_done_callback(lambda _: done_order.append("slow"))
        fast.add_done_callback(lambda _: done_order.append("fast"))
        await asyncio.gather(slow, fast)
        assert done_order == ["slow", "fast"]
        await harness.scheduler.stop()

    _run(scenario())


def test_without_preserve_ordering_a_fast_response_leaves_first():
    async def scenario() -> None:
        harness = Harness(_config(max_batch=1), instances=2)
        slow_gate, fast_gate = harness.gate(1), harness.gate(2)
        slow, fast = harness.submit(1), harness.submit(2)
        await until(lambda: len(harness.log) == 2)
        fast_gate.set()
        await asyncio.wait_for(fast, 5)
        assert not slow.done()
        slow_gate.set()
        await slow
        await harness.scheduler.stop()

    _run(scenario())


def test_timeout_action_delay_moves_a_request_behind_fresh_ones():
    async def scenario() -> None:
        policy = QueuePolicy(timeout_action="DELAY", default_timeout_microseconds=50_000)
        harness = Harness(_config(max_batch=1, default_queue_policy=policy))
        busy = harness.gate(0)
        blocker = harness.submit(0)
        await until(lambda: len(harness.log) == 1)
        stale = harness.submit(1)
        await asyncio.sleep(0.1)  # past its 50 ms: moved to the delayed queue
        fresh = harness.submit(2)
        busy.set()
        await asyncio.gather(blocker, stale, fresh)
        assert harness.log == [[0.0], [2.0], [1.0]]
        await harness.scheduler.stop()

    _run(scenario())


def test_timeout_action_reject_fails_only_the_late_request():
    async def scenario() -> None:
        policy = QueuePolicy(default_timeout_microseconds=50_000)
        harness = Harness(_config(max_batch=1, default_queue_policy=policy))
        busy = harness.gate(0)
        blocker = harness.submit(0)
        await until(lambda: len(harness.log) == 1)
        late = harness.submit(1)
        with pytest.raises(InferenceError) as failure:
            await asyncio.wait_for(late, 5)
        assert failure.value.code is ErrorCode.UNAVAILABLE
        assert failure.value.message == "Request timeout expired"
        busy.set()
        await blocker
        assert harness.log == [[0.0]]
        await harness.scheduler.stop()

    _run(scenario())


def test_max_queue_size_applies_per_priority_level():
    async def scenario() -> None:
        harness = Harness(
            _config(
                max_batch=1,
                priority_levels=2,
                default_priority_level=1,
                priority_queue_policy={2: QueuePolicy(max_queue_size=1)},
            )
        )
        busy = harness.gate(0)
        blocker = harness.submit(0)
        await until(lambda: len(harness.log) == 1)
        queued = harness.submit(1, priority=2)
        await until(lambda: harness.scheduler.inflight == 2, "the queued request")
        with pytest.raises(InferenceError, match="Exceeds maximum queue size"):
            await harness.scheduler.submit(_request(2, priority=2))
        other_level = harness.submit(3, priority=1)
        busy.set()
        await asyncio.gather(blocker, queued, other_level)
        assert harness.log == [[0.0], [3.0], [1.0]]
        await harness.scheduler.stop()

    _run(scenario())


def test_cancelled_request_is_never_executed():
    async def scenario() -> None:
        harness = Harness(_config(max_batch=1))
        busy = harness.gate(0)
        blocker = harness.submit(0)
        await until(lambda: len(harness.log) == 1)
        gone = harness.submit(1)
        kept = harness.submit(2)
        await until(lambda: harness.scheduler.inflight == 3, "both queued")
        gone.cancel()
        busy.set()
        await asyncio.gather(blocker, kept)
        assert harness.log == [[0.0], [2.0]]
        assert harness.stats.inference_count == 2
        await harness.scheduler.stop()

    _run(scenario())


def test_a_batch_is_cut_to_the_largest_preferred_size():
    async def scenario() -> None:
        harness = Harness(_config(max_batch=4, preferred_batch_size=(2,)))
        busy = harness.gate(0)
        blocker = harness.submit(0)
        await until(lambda: len(harness.log) == 1)
        queued = [harness.submit(v) for v in (1, 2, 3)]
        await until(lambda: harness.scheduler.inflight == 4, "three queued")
        busy.set()
        await asyncio.gather(blocker, *queued)
        assert harness.log == [[0.0], [1.0, 2.0], [3.0]]
        assert {size: b.compute_infer.count for size, b in harness.stats.batches.items()} == {
            1: 2,
            2: 1,
        }
        await harness.scheduler.stop()

    _run(scenario())


def test_stop_runs_what_was_accepted_and_refuses_new_work():
    async def scenario() -> None:
        harness = Harness(_config(max_batch=1))
        busy = harness.gate(0)
        accepted = [harness.submit(v) for v in (0, 1, 2)]
        await until(lambda: len(harness.log) == 1)
        stopping = asyncio.ensure_future(harness.scheduler.stop())
        await asyncio.sleep(0.01)
        with pytest.raises(InferenceError) as refused:
            await harness.scheduler.submit(_request(9))
        assert refused.value.code is ErrorCode.UNAVAILABLE
        busy.set()
        await stopping
        assert all(task.done() and not task.exception() for task in accepted)
        assert harness.log == [[0.0], [1.0], [2.0]]

    _run(scenario())
