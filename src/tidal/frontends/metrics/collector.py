"""Prometheus metric families read from the models' ``ModelStatistics`` at scrape time.

Nothing is counted per request here: the schedulers keep plain integers and this collector
turns them into Triton's metric families (same names, same ``model``/``version`` labels, so
existing Triton dashboards work), plus latency and batch-size histograms Triton lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from tidal.scheduling.statistics import FAILURE_REASONS, ModelStatistics

# (model name, version number, its statistics), as InferenceServer.model_statistics gives them
StatisticsSource = Callable[[], list[tuple[str, int, ModelStatistics]]]

# Batch sizes are counted exactly per execution; the histogram groups them by powers of two.
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

_LABELS = ("model", "version")

# Triton's counters: name, help, how to read the value from the statistics.
_COUNTERS: tuple[tuple[str, str, Callable[[ModelStatistics], int]], ...] = (
    (
        "nv_inference_request_success",
        "Successful inference requests, each counted once whatever its batch size",
        lambda s: s.success.count,
    ),
    (
        "nv_inference_count",
        "Inferences performed: a request with a batch of n counts n",
        lambda s: s.inference_count,
    ),
    (
        "nv_inference_exec_count",
        "Model executions performed: a dynamically batched execution counts once",
        lambda s: s.execution_count,
    ),
    (
        "nv_inference_request_duration_us",
        "Total time of successful requests from arrival to response, in microseconds",
        lambda s: s.success.ns // 1000,
    ),
    (
        "nv_inference_queue_duration_us",
        "Total time successful requests waited in the scheduler queue, in microseconds",
        lambda s: s.queue.ns // 1000,
    ),
    (
        "nv_inference_compute_input_duration_us",
        "Total time spent preparing inputs for the model, in microseconds",
        lambda s: s.compute_input.ns // 1000,
    ),
    (
        "nv_inference_compute_infer_duration_us",
        "Total time the model spent executing requests, in microseconds",
        lambda s: s.compute_infer.ns // 1000,
    ),
    (
        "nv_inference_compute_output_duration_us",
        "Total time spent extracting the model's outputs, in microseconds",
        lambda s: s.compute_output.ns // 1000,
    ),
)

_PHASE_HELP = {
    "request": "Latency of successful requests from arrival to response, in seconds",
    "queue": "Time successful requests waited in the scheduler queue, in seconds",
    "compute_infer": "Time the model spent executing each request, in seconds",
}


def counter_family(name: str, documentation: str) -> Metric:
    """A counter exposed under exactly ``name``: Triton's counters have no ``_total``."""
    return Metric(name, documentation, "counter")


class ModelMetricsCollector:
    """A prometheus_client collector over every loaded model version's statistics."""

    def __init__(self, source: StatisticsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        entries = [(name, str(version), stats) for name, version, stats in self._source()]
        for metric_name, documentation, read in _COUNTERS:
            family = counter_family(metric_name, documentation)
            for name, version, stats in entries:
                family.add_sample(metric_name, {"model": name, "version": version}, read(stats))
            yield family
        yield _failures(entries)
        pending = GaugeMetricFamily(
            "nv_inference_pending_request_count",
            "Requests accepted by the scheduler and not executing yet",
            labels=_LABELS,
        )
        for name, version, stats in entries:
            pending.add_metric([name, version], stats.pending)
        yield pending
        yield from _latency_histograms(entries)
        yield _batch_sizes(entries)


def _failures(entries: list[tuple[str, str, ModelStatistics]]) -> Metric:
    family = counter_family(
        "nv_inference_request_failure",
        "Failed inference requests, by reason (REJECTED, CANCELED, BACKEND, OTHER)",
    )
    for name, version, stats in entries:
        for reason, count in zip(FAILURE_REASONS, stats.failures, strict=True):
            labels = {"model": name, "reason": reason, "version": version}
            family.add_sample("nv_inference_request_failure", labels, count)
    return family


def _latency_histograms(entries: list[tuple[str, str, ModelStatistics]]) -> Iterator[Metric]:
    families: dict[str, HistogramMetricFamily] = {}
    for name, version, stats in entries:
        for phase, duration, histogram in stats.latency_phases():
            family = families.get(phase)
            if family is None:
                family = families[phase] = HistogramMetricFamily(
                    f"tidal_inference_{phase}_duration_seconds",
                    _PHASE_HELP[phase],
                    labels=_LABELS,
                )
            buckets = [(floatToGoString(le), count) for le, count in histogram.cumulative()]
            family.add_metric([name, version], buckets, duration.ns / 1e9)
    yield from families.values()


def _batch_sizes(entries: list[tuple[str, str, ModelStatistics]]) -> Metric:
    family = HistogramMetricFamily(
        "tidal_inference_batch_size",
        "Batch size of each model execution (samples per execution)",
        labels=_LABELS,
    )
    for name, version, stats in entries:
        counts = [0] * (len(BATCH_SIZE_BUCKETS) + 1)
        total = 0
        for size, batch in stats.batches.items():
            executions = batch.compute_infer.count
            total += size * executions
            index = next(
                (i for i, bound in enumerate(BATCH_SIZE_BUCKETS) if size <= bound),
                len(BATCH_SIZE_BUCKETS),
            )
            counts[index] += executions
        buckets = []
        running = 0
        for bound, count in zip((*BATCH_SIZE_BUCKETS, "+Inf"), counts, strict=True):
            running += count
            buckets.append((str(bound), running))
        family.add_metric([name, version], buckets, total)
    return family
