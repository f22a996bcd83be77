"""ModelStatistics, and what the schedulers record in it: successes, failures by reason,
pending requests, executions and each request's timing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from tidal.config.model_config import DynamicBatching, ModelConfig, QueuePolicy, TensorConfig
from tidal.config.settings import DEFAULT_LATENCY_BUCKETS, ServerSettings, parse_buckets
from tidal.core.datatypes import DataType
from tidal.core.errors import ErrorCode, InferenceError
from tidal.core.types import InferInput, InferOutput, InferRequest, InferResponse
from tidal.scheduling.direct import DirectScheduler
from tidal.scheduling.dynamic_batcher import DynamicBatchScheduler
from tidal.scheduling.instance_pool import InstancePool
from tidal.scheduling.statistics import (
    BACKEND,
    CANCELED,
    CURRENT_TIMING,
    FAILURE_REASONS,
    OTHER,
    REJECTED,
    LatencyHistogram,
    ModelStatistics,
    Phases,
    RequestTiming,
    latency_buckets,
    set_latency_buckets,
)

from ..waiting import until

MS = 1_000_000  # nanoseconds


# -- ModelStatistics on its own -------------------------------------------------------------


def test_success_counts_every_phase_and_the_last_inference_time():
    stats = ModelStatistics()
    stats.record_success(5 * MS, 1 * MS, Phases(200, 3 * MS, 100))
    stats.record_success(
        7 * MS, 2 * MS, Phases(0, 4 * MS, 0)
    )  # an instance that does not split its time
    assert (stats.success.count, stats.success.ns) == (2, 12 * MS)
    assert (stats.queue.count, stats.queue.ns) == (2, 3 * MS)
    assert (stats.compute_infer.count, stats.compute_infer.ns) == (2, 7 * MS)
    assert (stats.compute_input.count, stats.compute_input.ns) == (2, 200)
    assert (stats.compute_output.count, stats.compute_output.ns) == (2, 100)
    assert stats.last_inference_ms > 1_600_000_000_000
    assert stats.fail.count == 0


def test_failures_are_counted_by_reason():
    stats = ModelStatistics()
    for reason in (REJECTED, REJECTED, CANCELED, BACKEND, OTHER):
        stats.record_failure(reason, MS)
    assert dict(zip(FAILURE_REASONS, stats.failures, strict=True)) == {
        "REJECTED": 2,
        "CANCELED": 1,
        "BACKEND": 1,
        "OTHER": 1,
    }
    assert (stats.fail.count, stats.fail.ns) == (5, 5 * MS)
    assert stats.success.count == 0 and stats.queue.count == 0


def test_executions_are_counted_per_batch_size():
    stats = ModelStatistics()
    stats.record_execution(4, Phases(10, 2 * MS, 5))
    stats.record_execution(4, Phases(30, 4 * MS, 15))
    stats.record_execution(1, Phases(0, MS, 0))
    assert (stats.execution_count, stats.inference_count) == (3, 9)
    assert {
        size: (b.compute_infer.count, b.compute_infer.ns) for size, b in stats.batches.items()
    } == {
        4: (2, 6 * MS),
        1: (1, MS),
    }
    four = stats.batches[4]
    assert (four.compute_input.ns, four.compute_output.ns) == (40, 20)


def test_histograms_count_each_phase_into_le_buckets():
    stats = ModelStatistics(latency_bounds_ns=(1 * MS, 10 * MS))
    stats.record_success(1 * MS, 0, Phases(0, 1 * MS, 0))  # exactly on a bound: that bucket ("le")
    stats.record_success(5 * MS, 2 * MS, Phases(0, 3 * MS, 0))
    stats.record_success(50 * MS, 20 * MS, Phases(0, 30 * MS, 0))
    phases = {name: (duration, histogram) for name, duration, histogram in stats.latency_phases()}
    assert list(phases) == ["request", "queue", "compute_infer"]
    request, histogram = phases["request"]
    assert histogram.cumulative() == [(0.001, 1), (0.01, 2), (float("inf"), 3)]
    assert request.count == 3  # a histogram's count and sum are its Duration's
    assert phases["queue"][1].cumulative() == [(0.001, 1), (0.01, 2), (float("inf"), 3)]
    assert phases["compute_infer"][1].cumulative() == [(0.001, 1), (0.01, 2), (float("inf"), 3)]


def test_histograms_can_be_turned_off():
    stats = ModelStatistics(latency_bounds_ns=())
    stats.record_success(MS, 0, Phases(0, MS, 0))
    assert stats.histograms is None
    assert stats.latency_phases() == []
    assert stats.success.count == 1


def test_latency_buckets_apply_to_statistics_created_afterwards():
    before = latency_buckets()
    assert before == DEFAULT_LATENCY_BUCKETS
    try:
        set_latency_buckets((0.5, 2.0))
        histogram = ModelStatistics().histograms[0]
        assert histogram.bounds_ns == (500 * MS, 2000 * MS)
        set_latency_buckets(())
        assert ModelStatistics().histograms is None
    finally:
        set_latency_buckets(before)


def test_latency_histogram_overflow_bucket():
    histogram = LatencyHistogram((100,))
    histogram.observe(101, count=3)
    assert histogram.counts == [0, 3]
    assert histogram.cumulative() == [(1e-7, 0), (float("inf"), 3)]


def test_request_timing_adds_up_compute():
    timing = RequestTiming(queue_ns=1, compute_input_ns=2, compute_infer_ns=3, compute_output_ns=4)
    assert timing.compute_ns == 9


@pytest.mark.parametrize(
    ("text", "bounds"),
    [("0.001, 0.01,0.1", (0.001, 0.01, 0.1)), ("", ()), (" , ", ()), ("2", (2.0,))],
)
def test_bucket_lists_parse(text, bounds):
    assert parse_buckets(text) == bounds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.1,abc", "'abc' is not a number"),
        ("0,1", "'0' must be a positive"),
        ("-1", "'-1' must be a positive"),
        ("inf", "'inf' must be a positive"),
        ("0.1,0.01", "must increase: 0.01 follows 0.1"),
        ("0.1,0.1", "must increase"),
    ],
)
def test_bad_bucket_lists_are_refused_with_the_reason(text, message):
    with pytest.raises(ValueError, match=message):
        parse_buckets(text)
    with pytest.raises(ValueError, match=message):
        ServerSettings(metrics_latency_buckets=text)


# -- what the schedulers record -------------------------------------------------------------


class Instance:
    """Echoes INPUT0. A request whose first value is in ``fail`` gets an error; one whose
    value has a gate waits until the test opens it."""

    def __init__(self, fail: Sequence[float] = (), explode: bool = False) -> None:
        self.fail = set(fail)
        self.explode = explode
        self.gates: dict[float, threading.Event] = {}
        self.started = threading.Event()

    def execute(self, batch: Sequence[InferRequest]) -> list[InferResponse | InferenceError]:
        self.started.set()
        for request in batch:
            gate = self.gates.get(_value(request))
            if gate is not None:
                assert gate.wait(5), "the test never opened the gate"
        if self.explode:
            raise RuntimeError("boom")
        return [
            InferenceError.internal(f"bad {_value(r)}")
            if _value(r) in self.fail
            else InferResponse(
                r.model_name, 1, [InferOutput("OUTPUT0", DataType.FP32, (1, 1), r.inputs[0].data)]
            )
            for r in batch
        ]

    def close(self) -> None:
        pass


def _value(request: InferRequest) -> float:
    return float(request.inputs[0].data[0, 0])


def _request(value: float, rows: int = 1, **parameters: object) -> InferRequest:
    data = np.full((rows, 1), value, dtype=np.float32)
    return InferRequest(
        "m", [InferInput("INPUT0", DataType.FP32, (rows, 1), data)], parameters=dict(parameters)
    )


def _config(**batching: object) -> ModelConfig:
    return ModelConfig(
        name="m",
        max_batch_size=8,
        inputs=(TensorConfig("INPUT0", DataType.FP32, (1,)),),
        outputs=(TensorConfig("OUTPUT0", DataType.FP32, (1,)),),
        dynamic_batching=DynamicBatching(**batching) if batching else None,  # type: ignore[arg-type]
    )


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


async def _submit_timed(scheduler, request: InferRequest) -> tuple[InferResponse, RequestTiming]:
    timing = RequestTiming()
    token = CURRENT_TIMING.set(timing)
    try:
        return await scheduler.submit(request), timing
    finally:
        CURRENT_TIMING.reset(token)


def test_direct_scheduler_records_success_with_the_request_timing():
    stats = ModelStatistics()

    async def scenario():
        scheduler = DirectScheduler(InstancePool([Instance()], "m"), _config(), stats)
        _, timing = await _submit_timed(scheduler, _request(1.0, rows=3))
        await scheduler.stop()
        return timing

    timing = _run(scenario())
    assert (stats.success.count, stats.fail.count) == (1, 0)
    assert (stats.execution_count, stats.inference_count) == (1, 3)
    assert timing.compute_infer_ns == stats.compute_infer.ns > 0
    assert timing.queue_ns == stats.queue.ns > 0
    assert stats.success.ns >= timing.queue_ns + timing.compute_infer_ns
    assert stats.pending == 0


def test_direct_scheduler_counts_a_model_error_as_a_backend_failure():
    stats = ModelStatistics()

    async def scenario():
        scheduler = DirectScheduler(InstancePool([Instance(fail=[2.0])], "m"), _config(), stats)
        with pytest.raises(InferenceError):
            await scheduler.submit(_request(2.0))
        await scheduler.stop()

    _run(scenario())
    assert stats.failures == [0, 0, 1, 0]  # BACKEND
    assert (stats.success.count, stats.execution_count, stats.inference_count) == (0, 0, 0)
    assert stats.queue.count == 0  # as in Triton, only successful requests count phases


def test_direct_scheduler_counts_an_exploding_execution_as_a_backend_failure():
    stats = ModelStatistics()

    async def scenario():
        scheduler = DirectScheduler(InstancePool([Instance(explode=True)], "m"), _config(), stats)
        with pytest.raises(RuntimeError):
            await scheduler.submit(_request(1.0))
        await scheduler.stop()

    _run(scenario())
    assert stats.failures[BACKEND] == 1


def test_direct_scheduler_counts_pending_and_cancelled_requests():
    stats = ModelStatistics()
    instance = Instance()
    gate = instance.gates[1.0] = threading.Event()

    async def scenario():
        scheduler = DirectScheduler(InstancePool([instance], "m"), _config(), stats)
        running = asyncio.ensure_future(scheduler.submit(_request(1.0)))
        await until(instance.started.is_set)
        waiting = [asyncio.ensure_future(scheduler.submit(_request(v))) for v in (2.0, 3.0)]
        await until(lambda: stats.pending == 2)
        waiting[0].cancel()
        await until(lambda: stats.pending == 1)
        gate.set()
        await running
        await waiting[1]
        with pytest.raises(asyncio.CancelledError):
            await waiting[0]
        await scheduler.stop()
        with pytest.raises(InferenceError):  # stopped: refused
            await scheduler.submit(_request(4.0))

    _run(scenario())
    assert stats.pending == 0
    assert stats.success.count == 2
    assert stats.failures == [1, 1, 0, 0]  # REJECTED (stopped), CANCELED


def test_batcher_records_each_request_of_a_batch_and_one_execution():
    stats = ModelStatistics()
    instance = Instance(fail=[3.0])
    gate = instance.gates[0.0] = threading.Event()

    async def scenario():
        scheduler = DynamicBatchScheduler(
            InstancePool([instance], "m"), _config(max_queue_delay_microseconds=0), stats
        )
        blocker = asyncio.ensure_future(scheduler.submit(_request(0.0)))
        await until(instance.started.is_set)
        queued = [asyncio.ensure_future(_submit_timed(scheduler, _request(v))) for v in (1, 2, 3)]
        await until(lambda: stats.pending == 3)
        gate.set()
        await blocker
        results = await asyncio.gather(*queued, return_exceptions=True)
        await scheduler.stop()
        return results

    first, second, third = _run(scenario())
    assert isinstance(third, InferenceError)
    (_, timing1), (_, timing2) = first, second
    assert timing1.compute_infer_ns == timing2.compute_infer_ns > 0  # one shared execution
    assert timing1.queue_ns > 0 and timing2.queue_ns > 0
    assert stats.pending == 0
    assert (stats.success.count, stats.failures) == (3, [0, 0, 1, 0])
    # the blocker alone, then one batch of three in which two samples were answered
    assert (stats.execution_count, stats.inference_count) == (2, 3)
    assert sorted(stats.batches) == [1, 2]


def test_batcher_counts_rejections_cancellations_and_bad_parameters():
    stats = ModelStatistics()
    instance = Instance()
    gate = instance.gates[0.0] = threading.Event()
    config = _config(
        max_queue_delay_microseconds=0,
        default_queue_policy=QueuePolicy(max_queue_size=1),
    )

    async def scenario():
        scheduler = DynamicBatchScheduler(InstancePool([instance], "m"), config, stats)
        blocker = asyncio.ensure_future(scheduler.submit(_request(0.0)))
        await until(instance.started.is_set)
        queued = asyncio.ensure_future(scheduler.submit(_request(1.0)))
        await until(lambda: stats.pending == 1)
        with pytest.raises(InferenceError) as full:
            await scheduler.submit(_request(2.0))
        assert full.value.code is ErrorCode.UNAVAILABLE
        with pytest.raises(InferenceError) as bad:
            await scheduler.submit(_request(2.0, priority=-1))
        assert bad.value.code is ErrorCode.INVALID_ARG
        queued.cancel()
        await until(lambda: stats.pending == 0)
        gate.set()
        await blocker
        await scheduler.stop()

    _run(scenario())
    assert stats.failures == [1, 1, 0, 1]  # REJECTED (queue full), CANCELED, OTHER
    assert stats.success.count == 1


def test_batcher_counts_a_queue_timeout_as_rejected():
    stats = ModelStatistics()
    instance = Instance()
    gate = instance.gates[0.0] = threading.Event()
    config = _config(
        max_queue_delay_microseconds=0,
        default_queue_policy=QueuePolicy(default_timeout_microseconds=20_000),
    )

    async def scenario():
        scheduler = DynamicBatchScheduler(InstancePool([instance], "m"), config, stats)
        blocker = asyncio.ensure_future(scheduler.submit(_request(0.0)))
        await until(instance.started.is_set)
        with pytest.raises(InferenceError, match="timeout"):
            await scheduler.submit(_request(1.0))
        gate.set()
        await blocker
        await scheduler.stop()

    _run(scenario())
    assert stats.failures == [1, 0, 0, 0]
    assert stats.pending == 0
