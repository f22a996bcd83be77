"""The raw ONNX Runtime ceiling: in-process samples/s of each benchmark model, no server.

    python bench/raw_ceiling.py [--models identity,mlp,cnn] [--seconds 3] [--cpu 0]

One session per model (CPU provider, all graph optimizations, sequential, 1 intra-op and 1 inter-op
thread), run on the calling thread pinned to one CPU (the CPU the server gets) with
``os.sched_setaffinity``. Per batch size (1, 4, 16, 64, capped at the model's max_batch_size):
2 warm-up runs, then ``session.run`` in a loop until ``seconds`` have passed and at least 3 runs
were made; samples/s = batch x runs / time spent inside ``run``. This is the method of the peers'
harness (bench-anchors raw_ort.py, 1 thread), so "% of raw ceiling" means the same on both sides.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.models import DEFAULT_REPOSITORY, MODEL_NAMES, ModelInfo, build_repository

BATCHES = (1, 4, 16, 64)
MAX_RUNS = 200_000


@dataclass(frozen=True)
class Ceiling:
    model: str
    best_batch: int
    samples_per_s: float  # at best_batch
    by_batch: dict[int, float] = field(default_factory=dict)  # batch -> samples/s
    cpu: int = 0


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _samples_per_s(session: ort.InferenceSession, batch: np.ndarray, seconds: float) -> float:
    feed = {"INPUT0": batch}
    for _ in range(2):
        session.run(None, feed)
    spent = 0.0
    runs = 0
    deadline = time.perf_counter() + seconds
    while (time.perf_counter() < deadline or runs < 3) and runs < MAX_RUNS:
        start = time.perf_counter()
        session.run(None, feed)
        spent += time.perf_counter() - start
        runs += 1
    return len(batch) * runs / spent


def measure_model(info: ModelInfo, repository: Path, seconds: float, cpu: int) -> Ceiling:
    """Samples/s per batch size for one model, on this thread pinned to ``cpu``."""
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        session = _session(repository / info.name / "1" / "model.onnx")
        rng = np.random.default_rng(0)
        by_batch: dict[int, float] = {}
        for size in (b for b in BATCHES if b <= info.max_batch_size):
            batch = rng.random((size, *info.input_dims), dtype=np.float32)
            by_batch[size] = _samples_per_s(session, batch, seconds)
        del session
    finally:
        os.sched_setaffinity(0, previous)
    best = max(by_batch, key=by_batch.__getitem__)
    return Ceiling(info.name, best, by_batch[best], by_batch, cpu)


def measure(
    infos: dict[str, ModelInfo], repository: Path, seconds: float = 3.0, cpu: int = 0
) -> dict[str, Ceiling]:
    return {name: measure_model(info, repository, seconds, cpu) for name, info in infos.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size")
    parser.add_argument("--cpu", type=int, default=0, help="the CPU the server is pinned to")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    args = parser.parse_args()
    infos = build_repository(args.repository, tuple(args.models.split(",")), quiet=True)
    print(f"onnxruntime {ort.__version__}, 1 intra-op thread, pinned to CPU {args.cpu}")
    print(f"{'model':9} " + " ".join(f"{'b=' + str(b):>11}" for b in BATCHES) + "  best")
    for name, info in infos.items():
        ceiling = measure_model(info, args.repository, args.seconds, args.cpu)
        cells = " ".join(
            f"{ceiling.by_batch[b]:>11,.1f}" if b in ceiling.by_batch else f"{'':>11}"
            for b in BATCHES
        )
        print(f"{name:9} {cells}  {ceiling.samples_per_s:,.1f}/s at b={ceiling.best_batch}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
