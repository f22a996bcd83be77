"""The Prometheus text format (version 0.0.4), written the way Triton writes it.

prometheus_client's own writer renames every counter family to ``<name>_total``; Triton's
counters (``nv_inference_request_success``, ...) have no such suffix and dashboards query
them by their bare names, so counters are written under the name their samples carry.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# OpenMetrics kinds the 0.0.4 text format spells differently
_TEXT_TYPES = {"unknown": "untyped", "info": "gauge", "stateset": "gauge"}


def render(collectors: Iterable[Collector]) -> bytes:
    """Every metric family of ``collectors``, in the text exposition format."""
    out: list[str] = []
    for collector in collectors:
        for metric in collector.collect():
            _render_family(metric, out)
    return "".join(out).encode("utf-8")


def _render_family(metric: Metric, out: list[str]) -> None:
    name = metric.name
    kind = metric.type
    samples = [s for s in metric.samples if s.name != name + "_created"]
    if kind == "counter" and samples and all(s.name == name + "_total" for s in samples):
        name += "_total"  # a prometheus_client counter: keep its conventional name
    elif kind == "info":
        name += "_info"
    elif kind == "gaugehistogram":
        kind = "histogram"
    help_text = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
    out.append(f"# HELP {name} {help_text}\n# TYPE {name} {_TEXT_TYPES.get(kind, kind)}\n")
    for sample in samples:
        if sample.labels:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
            out.append(f"{sample.name}{{{labels}}} {floatToGoString(sample.value)}\n")
        else:
            out.append(f"{sample.name} {floatToGoString(sample.value)}\n")


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
