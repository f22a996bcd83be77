"""Per model-version counters, durations and latency histograms.

The shape is Triton's statistics extension; the Prometheus collector reads the same objects at
scrape time. Everything is updated on the event loop with plain ints (no locks), so recording
a request costs a few attribute updates and, with histograms on, one bisect per phase.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import NamedTuple

from tidal.config.settings import DEFAULT_LATENCY_BUCKETS

# Why a request failed, as Triton's ``nv_inference_request_failure{reason=...}`` says it.
REJECTED = 0  # refused by the scheduler: queue full, queue timeout, model unloading
CANCELED = 1  # the caller went away before the response
BACKEND = 2  # the model failed to execute it
OTHER = 3  # anything else: the request did not fit the model, bad parameters
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")

# The phases with a latency histogram (as in Triton's default summaries, compute_input and
# compute_output have only their counters).
LATENCY_PHASES = ("request", "queue", "compute_infer")

# The bounds that versions loaded from now on count into (nanoseconds); () turns them off.
_latency_bounds_ns: tuple[int, ...] = tuple(round(b * 1e9) for b in DEFAULT_LATENCY_BUCKETS)


def set_latency_buckets(seconds: Sequence[float]) -> None:
    """Set the histogram bounds (seconds) for every version loaded from now on; an empty
    sequence records no histograms. Called once at start-up, before models load."""
    global _latency_bounds_ns
    _latency_bounds_ns = tuple(round(b * 1e9) for b in seconds)


def latency_buckets() -> tuple[float, ...]:
    """The bounds new versions count into, in seconds."""
    return tuple(b / 1e9 for b in _latency_bounds_ns)


@dataclass(slots=True)
class Duration:
    """How many times something happened and how long it took in total."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns


@dataclass(slots=True)
class BatchStats:
    """One batch size's executions: each phase counted once per execution."""

    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


class LatencyHistogram:
    """Observation counts per bucket; ``counts[-1]`` holds those above the last bound."""

    __slots__ = ("bounds_ns", "counts")

    def __init__(self, bounds_ns: tuple[int, ...]) -> None:
        self.bounds_ns = bounds_ns
        self.counts = [0] * (len(bounds_ns) + 1)

    def observe(self, ns: int, count: int = 1) -> None:
        # bisect_left finds the first bound >= ns: Prometheus' "le" (less or equal) bucket.
        self.counts[bisect_left(self.bounds_ns, ns)] += count

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound in seconds, observations <= it)`` per bucket, ending with +Inf."""
        total = 0
        buckets = []
        for bound, count in zip((*self.bounds_ns, None), self.counts, strict=True):
            total += count
            buckets.append((math.inf if bound is None else bound / 1e9, total))
        return buckets


class Phases(NamedTuple):
    """One execution's time in nanoseconds: preparing the inputs, running the model, and
    splitting the outputs into responses. An instance that does not tell them apart reports
    all of it as ``infer_ns``."""

    input_ns: int
    infer_ns: int
    output_ns: int


@dataclass(slots=True)
class RequestTiming:
    """One request's time in each phase (nanoseconds), added to by the scheduler(s) that
    run it: an ensemble's steps add up.

    The facade makes it visible to the scheduler while the request runs (``CURRENT_TIMING``);
    frontends read it back, e.g. for HTTP's ``Server-Timing`` header.
    """

    queue_ns: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0

    @property
    def compute_ns(self) -> int:
        return self.compute_input_ns + self.compute_infer_ns + self.compute_output_ns

    def phases(self) -> Phases:
        return Phases(self.compute_input_ns, self.compute_infer_ns, self.compute_output_ns)

    def add(self, queue_ns: int, phases: Phases) -> None:
        """Add one execution's share (an ensemble's steps each add theirs)."""
        self.queue_ns += queue_ns
        self.compute_input_ns += phases.input_ns
        self.compute_infer_ns += phases.infer_ns
        self.compute_output_ns += phases.output_ns


# The timing of the request the current task is running, if its caller asked for one. A
# context variable rather than a ``submit`` argument keeps the Scheduler interface at one
# method; it is set and reset around each ``submit`` by the facade.
CURRENT_TIMING: ContextVar[RequestTiming | None] = ContextVar("tidal_request_timing", default=None)


class ModelStatistics:
    """Counters of one model version. Schedulers record; the statistics endpoints and the
    metrics collector read.

    ``success``/``fail`` time a request from its arrival at the scheduler to its response;
    ``queue`` from arrival to execution start; ``compute_input`` the preparation of the model's
    inputs (gathering a batch into one array per input), ``compute_infer`` the model's run and
    ``compute_output`` the split of its outputs into responses (see ``Phases``). As in
    Triton, queue and compute are counted per successful request, and ``inference_count``,
    ``execution_count`` and ``batch_stats`` count executions that produced a response.
    """

    __slots__ = (
        "batches",
        "compute_infer",
        "compute_input",
        "compute_output",
        "execution_count",
        "fail",
        "failures",
        "histograms",
        "inference_count",
        "last_inference_ms",
        "pending",
        "queue",
        "success",
    )

    def __init__(self, latency_bounds_ns: tuple[int, ...] | None = None) -> None:
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.success = Duration()
        self.fail = Duration()
        self.failures = [0] * len(FAILURE_REASONS)  # per reason, indexed by REJECTED, ...
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        self.batches: dict[int, BatchStats] = {}
        self.pending = 0  # requests accepted and not yet executing
        bounds = _latency_bounds_ns if latency_bounds_ns is None else latency_bounds_ns
        # request, queue and compute_infer latency (the phases that take time); None when off
        self.histograms: tuple[LatencyHistogram, ...] | None = (
            tuple(LatencyHistogram(bounds) for _ in range(3)) if bounds else None
        )

    def record_success(self, total_ns: int, queue_ns: int, phases: Phases) -> None:
        """A request answered successfully: its whole time, its queueing and its execution."""
        # Inlined rather than Duration.add: this runs once per request on the event loop.
        input_ns, infer_ns, output_ns = phases
        success, queue, infer = self.success, self.queue, self.compute_infer
        success.count += 1
        success.ns += total_ns
        queue.count += 1
        queue.ns += queue_ns
        infer.count += 1
        infer.ns += infer_ns
        compute_input, compute_output = self.compute_input, self.compute_output
        compute_input.count += 1
        compute_input.ns += input_ns
        compute_output.count += 1
        compute_output.ns += output_ns
        self.last_inference_ms = time.time_ns() // 1_000_000
        histograms = self.histograms
        if histograms is not None:
            request_histogram, queue_histogram, infer_histogram = histograms
            request_histogram.observe(total_ns)
            queue_histogram.observe(queue_ns)
            infer_histogram.observe(infer_ns)

    def record_failure(self, reason: int, total_ns: int) -> None:
        """A request that ended in an error (``reason`` is REJECTED, CANCELED, ...)."""
        self.fail.add(total_ns)
        self.failures[reason] += 1
        self.last_inference_ms = time.time_ns() // 1_000_000

    def record_execution(self, batch_size: int, phases: Phases) -> None:
        """One model execution that answered ``batch_size`` samples."""
        self.execution_count += 1
        self.inference_count += batch_size
        stats = self.batches.get(batch_size)
        if stats is None:
            stats = self.batches[batch_size] = BatchStats()
        stats.compute_input.add(phases.input_ns)
        stats.compute_infer.add(phases.infer_ns)
        stats.compute_output.add(phases.output_ns)

    def latency_phases(self) -> list[tuple[str, Duration, LatencyHistogram]]:
        """``(phase, its Duration, its histogram)`` for each phase; empty when histograms
        are off. The histogram's count and sum match the Duration's."""
        if self.histograms is None:
            return []
        durations = (self.success, self.queue, self.compute_infer)
        return list(zip(LATENCY_PHASES, durations, self.histograms, strict=True))
