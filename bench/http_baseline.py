"""Request rates of the example ``simple`` model over HTTP JSON and binary, 1 and 8 connections.

    bash bench/setup_perf_analyzer.sh          # once
    python bench/http_baseline.py   # prints a table, writes bench/results/http_baseline.json

The server runs pinned to CPU 0 and perf_analyzer to CPU 1, so the two don't compete.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.perf_analyzer import run_perf_analyzer
from bench.server_process import TidalProcess, default_perf_analyzer
from tidal.examples import example_repository


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--perf-analyzer", default=default_perf_analyzer())
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--window-ms", type=int, default=3000)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--load-cpus", default="1")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "http_baseline.json")
    )
    args = parser.parse_args()

    server = TidalProcess([example_repository()], args.server_cpus, [])
    rows = []
    try:
        for tensor_format in ("json", "binary"):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                result = run_perf_analyzer(
                    args.perf_analyzer,
                    server.url,
                    "simple",
                    concurrency,
                    tensor_format=tensor_format,
                    cpus=args.load_cpus,
                    window_ms=args.window_ms,
                )
                rows.append({"format": tensor_format, "concurrency": concurrency, **asdict(result)})
        rss = server.rss_mib()
    finally:
        server.stop()

    print(f"{'model':8} {'format':7} {'conc':>4} {'infer/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        note = f"  ERROR {row['error']}" if row["error"] else ""
        print(
            f"{'simple':8} {row['format']:7} {row['concurrency']:>4} {row['throughput']:>10,.0f} "
            f"{row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f}{note}"
        )
    print(f"server RSS after the runs: {rss:.0f} MiB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "machine": platform.machine(),
                "server_cpus": args.server_cpus,
                "load_cpus": args.load_cpus,
                "rss_mib": rss,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0 if all(not r["error"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
