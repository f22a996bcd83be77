"""Run the real ``perf_analyzer`` once and read its CSV."""

from __future__ import annotations

import csv
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LoadResult:
    throughput: float  # inferences per second
    p50_ms: float
    p99_ms: float
    error: str = ""
    p90_ms: float = 0.0
    csv_row: dict[str, str] = field(default_factory=dict)  # perf_analyzer's whole CSV row


def run_perf_analyzer(
    binary: str,
    url: str,
    model: str,
    concurrency: int,
    *,
    protocol: str = "http",
    tensor_format: str = "binary",
    cpus: str | None = "1",
    window_ms: int = 3000,
    shape: str | None = None,
) -> LoadResult:
    """Closed loop at ``concurrency``: 3 windows of ``window_ms``, stability check off."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "pa.csv"
        command = [
            binary,
            "-m",
            model,
            "-u",
            url,
            "-i",
            protocol,
            "-b",
            "1",
            "--concurrency-range",
            str(concurrency),
            "-p",
            str(window_ms),
            "-s",
            "999",
            "-r",
            "3",
            "-f",
            str(report),
        ]
        if tensor_format == "json" and protocol == "http":
            command += ["--input-tensor-format", "json", "--output-tensor-format", "json"]
        if shape:
            command += ["--shape", shape]
        if cpus:
            command = ["taskset", "-c", cpus, *command]
        limit = 3 * window_ms / 1000 * 3 + 60
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return LoadResult(0, 0, 0, "perf_analyzer timed out")
        if done.returncode != 0 or not report.exists():
            return LoadResult(
                0, 0, 0, f"rc={done.returncode}: {(done.stdout + done.stderr)[-300:]}"
            )
        with report.open() as handle:
            row = next(csv.DictReader(handle))
        return LoadResult(
            throughput=float(row["Inferences/Second"]),
            p50_ms=float(row["p50 latency"]) / 1000,
            p99_ms=float(row["p99 latency"]) / 1000,
            p90_ms=float(row["p90 latency"]) / 1000,
            csv_row=dict(row),
        )
