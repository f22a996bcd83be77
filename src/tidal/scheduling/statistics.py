"""Per model-version counters and durations, in the shape of Triton's statistics extension."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


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
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass
class ModelStatistics:
    """Updated on the event loop by the scheduler; read by the statistics endpoints.

    ``success``/``fail`` time a request from arrival to response; ``queue`` from arrival
    to execution start; ``compute_infer`` the model's execution, per request.
    """

    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStats] = field(default_factory=dict)

    def record_execution(self, batch_size: int, request_count: int, infer_ns: int) -> None:
        """One execution of ``request_count`` requests holding ``batch_size`` samples."""
        self.execution_count += 1
        self.inference_count += batch_size
        self.last_inference_ms = time.time_ns() // 1_000_000
        self.compute_infer.add(infer_ns * request_count, request_count)
        self.compute_input.add(0, request_count)
        self.compute_output.add(0, request_count)
        stats = self.batches.get(batch_size)
        if stats is None:
            stats = self.batches[batch_size] = BatchStats()
        stats.compute_infer.add(infer_ns)
        stats.compute_input.add(0)
        stats.compute_output.add(0)

    def record_request(self, ok: bool, total_ns: int) -> None:
        (self.success if ok else self.fail).add(total_ns)
