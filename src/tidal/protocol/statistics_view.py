"""The statistics counters the protocol writes out, as structural types.

The schedulers own and record ``ModelStatistics`` (``tidal.scheduling.statistics``); the
protocol layer only reads these attributes, so it names their shape here instead of importing
a higher layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["BatchView", "DurationView", "StatisticsView"]


class DurationView(Protocol):
    """How many times something happened and how long it took in total."""

    @property
    def count(self) -> int: ...
    @property
    def ns(self) -> int: ...


class BatchView(Protocol):
    """One batch size's executions."""

    @property
    def compute_input(self) -> DurationView: ...
    @property
    def compute_infer(self) -> DurationView: ...
    @property
    def compute_output(self) -> DurationView: ...


class StatisticsView(Protocol):
    """The counters of one model version that the statistics extension reports."""

    @property
    def last_inference_ms(self) -> int: ...
    @property
    def inference_count(self) -> int: ...
    @property
    def execution_count(self) -> int: ...
    @property
    def success(self) -> DurationView: ...
    @property
    def fail(self) -> DurationView: ...
    @property
    def queue(self) -> DurationView: ...
    @property
    def compute_input(self) -> DurationView: ...
    @property
    def compute_infer(self) -> DurationView: ...
    @property
    def compute_output(self) -> DurationView: ...
    @property
    def batches(self) -> Mapping[int, BatchView]: ...
