"""Triton's host CPU and memory gauges, read from ``/proc`` at scrape time (Linux only).

The process's own CPU time and memory come from prometheus_client's ``ProcessCollector``;
these are the machine-wide figures Triton dashboards plot as ``nv_cpu_*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.metrics_core import GaugeMetricFamily, Metric


class HostMetricsCollector:
    """``nv_cpu_utilization`` (since the previous scrape), ``nv_cpu_memory_total_bytes`` and
    ``nv_cpu_memory_used_bytes``. Yields nothing where ``/proc`` cannot be read."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._last: tuple[int, int] | None = None  # (busy, total) jiffies at the last scrape

    def collect(self) -> Iterator[Metric]:
        utilization = self._cpu_utilization()
        if utilization is not None:
            yield GaugeMetricFamily(
                "nv_cpu_utilization",
                "Host CPU utilization (0.0 to 1.0) since the previous scrape",
                value=utilization,
            )
        memory = self._memory()
        if memory is not None:
            total, available = memory
            yield GaugeMetricFamily(
                "nv_cpu_memory_total_bytes", "Host memory (RAM) in bytes", value=total
            )
            yield GaugeMetricFamily(
                "nv_cpu_memory_used_bytes",
                "Host memory (RAM) in use in bytes (total less available)",
                value=total - available,
            )

    def _cpu_utilization(self) -> float | None:
        try:
            first = (self._proc / "stat").read_text().split("\n", 1)[0].split()
        except OSError:
            return None
        if not first or first[0] != "cpu":
            return None
        jiffies = [int(value) for value in first[1:9]]
        total = sum(jiffies)
        idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0)  # idle + iowait
        busy = total - idle
        last_busy, last_total = self._last or (0, 0)
        self._last = (busy, total)
        elapsed = total - last_total
        return (busy - last_busy) / elapsed if elapsed > 0 else 0.0

    def _memory(self) -> tuple[int, int] | None:
        try:
            text = (self._proc / "meminfo").read_text()
        except OSError:
            return None
        values = {}
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024  # the file says kB
        if "MemTotal" not in values or "MemAvailable" not in values:
            return None
        return values["MemTotal"], values["MemAvailable"]
