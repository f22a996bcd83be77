"""tidal's benchmark: the identity, mlp and cnn models under perf_analyzer, beside the raw ceiling.

    bash bench/setup_perf_analyzer.sh     # once: the real perf_analyzer 2.45.0
    python bench/run.py [--models identity,mlp,cnn] [--formats binary,json] [--protocols http]
                        [--concurrency 1,8,32] [--cnn-concurrency 1,8,16] [--window-ms 3000]
                        [--repeat 1] [--out bench/results/run-<timestamp>.json]
                        [--server-arg=--log-verbose=1 ...]

Steps: build the models (bench/models.py), measure the raw ONNX Runtime ceiling in this process
pinned to the server's CPU (bench/raw_ceiling.py), start ``tidal serve`` pinned to CPU 0 with
``taskset`` on free loopback ports, record its RSS once the models are loaded, drive it from CPU 1
with perf_analyzer (batch-1 requests, closed loop at each concurrency, 3 windows of --window-ms,
stability check off), record the RSS after each model and each pass, stop it, print one table and
write everything to a JSON file. The server's stderr goes to <out>.server.log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.models import DEFAULT_REPOSITORY, MODEL_NAMES, ModelInfo, build_repository
from bench.perf_analyzer import LoadResult, run_perf_analyzer
from bench.raw_ceiling import Ceiling, measure
from bench.server_process import TidalProcess, default_perf_analyzer, free_port

BENCH = Path(__file__).resolve().parent
PROTOCOLS = ("http", "grpc")
FORMATS = ("binary", "json")


def _csv(text: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if allowed is not None:
        unknown = [item for item in items if item not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown)} (choose from {', '.join(allowed)})"
            )
    if not items:
        raise argparse.ArgumentTypeError("empty list")
    return items


def _int_csv(text: str) -> list[int]:
    try:
        values = [int(item) for item in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers, got '{text}'") from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("concurrency must be at least 1")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--models", type=lambda t: _csv(t, MODEL_NAMES), default=list(MODEL_NAMES))
    parser.add_argument(
        "--formats",
        type=lambda t: _csv(t, FORMATS),
        default=list(FORMATS),
        help="HTTP tensor formats: binary (Triton binary extension) and/or json",
    )
    parser.add_argument(
        "--protocols",
        type=lambda t: _csv(t, PROTOCOLS),
        default=["http"],
        help="http and/or grpc (gRPC sends binary tensors; --formats applies to HTTP only)",
    )
    parser.add_argument("--concurrency", type=_int_csv, default=[1, 8, 32])
    parser.add_argument("--cnn-concurrency", type=_int_csv, default=[1, 8, 16])
    parser.add_argument("--window-ms", type=int, default=3000, help="perf_analyzer window (x3)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the whole matrix")
    parser.add_argument(
        "--raw-seconds",
        type=float,
        default=3.0,
        help="raw ceiling: seconds per batch size (0 skips it)",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `tidal serve`, repeatable (write --server-arg=--flag=value)",
    )
    parser.add_argument("--server-cpus", default="0", help="taskset CPU list for the server")
    parser.add_argument("--load-cpus", default="1", help="taskset CPU list for perf_analyzer")
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY)
    parser.add_argument("--perf-analyzer", default=default_perf_analyzer())
    parser.add_argument(
        "--anchors-jsonl",
        type=Path,
        default=None,
        help="also append the rows, in bench-anchors' runs.jsonl format, to this file "
        "(e.g. <anchors copy>/work/results/runs.jsonl, so its report.py shows them)",
    )
    parser.add_argument("--label", default="tidal", help="system label in --anchors-jsonl rows")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.window_ms < 100:
        parser.error("--window-ms must be at least 100")
    if args.out is None:
        args.out = BENCH / "results" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    return args


def _first_cpu(cpus: str) -> int:
    """The first CPU of a taskset list such as "0", "0-1" or "2,3"."""
    return int(cpus.split(",")[0].split("-")[0])


def _variants(protocols: list[str], formats: list[str]) -> list[tuple[str, str]]:
    """(protocol, format) pairs: HTTP once per tensor format, gRPC once."""
    pairs: list[tuple[str, str]] = []
    for protocol in protocols:
        if protocol == "http":
            pairs += [("http", tensor_format) for tensor_format in formats]
        else:
            pairs.append((protocol, "binary"))
    return pairs


def _label(protocol: str, tensor_format: str) -> str:
    return "grpc" if protocol == "grpc" else f"{protocol}/{tensor_format}"


def _rss(server: TidalProcess) -> float | None:
    try:
        return round(server.rss_mib(), 1)
    except (OSError, AttributeError):  # the process is gone
        return None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _error_summary(error: str) -> str:
    """The telling part of perf_analyzer's output: its 'error:' line, else the last line."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower():
            return line
    return lines[-1] if lines else error


def _perf_analyzer_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "Version" in line]
    return lines[0].strip() if lines else ""


def _anchor_row(args: argparse.Namespace, row: dict, url: str) -> dict:
    """One row in bench-anchors' runs.jsonl schema (load.py), so its report.py can render it."""
    common = {
        "ts": row["ts"],
        "label": args.label,
        "tool": "pa",
        "protocol": row["protocol"],
        "format": row["format"] if row["protocol"] == "http" else "grpc",
        "model": row["model"],
        "batch": 1,
        "concurrency": row["concurrency"],
        "url": url,
        "server_cpus": args.server_cpus,
        "load_cpus": args.load_cpus,
        "loadavg1_before": row["loadavg1_before"],
        "loadavg1_after": row["loadavg1_after"],
        "note": f"tidal bench/run.py pass {row['pass']}",
    }
    if row["error"]:
        return {**common, "error": f"perf_analyzer: {row['error'][-400:]}"}
    return {
        **common,
        "throughput": row["throughput"],
        "p50_us": row["p50_ms"] * 1000,
        "p90_us": row["p90_ms"] * 1000,
        "p99_us": row["p99_ms"] * 1000,
        "errors": 0,
        "raw": row["csv_row"],
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict:
    """Build, measure the ceiling, start the server, run the matrix, stop it; return the record."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    loadavg_start = os.getloadavg()
    infos = build_repository(args.repository, tuple(args.models), quiet=True)
    ceilings = _raw_ceilings(args, infos) if args.raw_seconds > 0 else {}

    # Serve only the selected models, so the idle RSS is theirs: a folder of links to them.
    view = Path(tempfile.mkdtemp(prefix="tidal-bench-repository-"))
    for name in args.models:
        (view / name).symlink_to((args.repository / name).resolve(), target_is_directory=True)
    try:
        server = TidalProcess(
            [view], args.server_cpus, list(args.server_arg), grpc_port=free_port()
        )
    except BaseException:
        shutil.rmtree(view)
        raise
    rows: list[dict] = []
    rss: dict = {"idle": None, "after_model": [], "after_pass": []}
    try:
        _log(f"# tidal pid {server.pid} on CPUs {args.server_cpus}: {server.url}")
        if not _ready(server.url):
            raise RuntimeError(f"tidal at {server.url} is not ready")
        time.sleep(1)  # let start-up allocations settle before the idle reading
        rss["idle"] = _rss(server)
        for pass_number in range(1, args.repeat + 1):
            for model in args.models:
                rows.extend(_measure_model(args, server, model, pass_number, ceilings.get(model)))
                rss["after_model"].append(
                    {"pass": pass_number, "model": model, "rss_mib": _rss(server)}
                )
            rss["after_pass"].append({"pass": pass_number, "rss_mib": _rss(server)})
    finally:
        server.stop()
        shutil.rmtree(view)
        log_path = args.out.with_suffix(".server.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("".join(server.log))

    return {
        "tool": "tidal bench/run.py",
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": [sys.executable, *sys.argv],
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": loadavg_start,
            "loadavg_end": os.getloadavg(),
        },
        "versions": _versions(args.perf_analyzer),
        "settings": {
            "models": args.models,
            "protocols": args.protocols,
            "formats": args.formats,
            "concurrency": args.concurrency,
            "cnn_concurrency": args.cnn_concurrency,
            "window_ms": args.window_ms,
            "windows": 3,
            "request_batch": 1,
            "repeat": args.repeat,
            "server_cpus": args.server_cpus,
            "load_cpus": args.load_cpus,
            "server_args": args.server_arg,
            "server_command": server.command,
            "server_exit_code": server.process.returncode,
            "repository": str(args.repository),
            "perf_analyzer": args.perf_analyzer,
        },
        "models": {name: asdict(info) for name, info in infos.items()},
        "raw_ceiling": {
            name: {**asdict(c), "by_batch": {str(b): v for b, v in c.by_batch.items()}}
            for name, c in ceilings.items()
        },
        "rss_mib": rss,
        "rows": rows,
    }


def _raw_ceilings(args: argparse.Namespace, infos: dict[str, ModelInfo]) -> dict[str, Ceiling]:
    """The raw ONNX Runtime ceiling of each model, on the first of the server's CPUs."""
    cpu = _first_cpu(args.server_cpus)
    _log(f"# raw ONNX Runtime ceiling on CPU {cpu}, {args.raw_seconds:g} s per batch size")
    ceilings = measure(infos, args.repository, args.raw_seconds, cpu)
    for ceiling in ceilings.values():
        _log(
            f"#   {ceiling.model:9} best b={ceiling.best_batch}: "
            f"{ceiling.samples_per_s:,.1f} samples/s"
        )
    return ceilings


def _measure_model(
    args: argparse.Namespace,
    server: TidalProcess,
    model: str,
    pass_number: int,
    ceiling: Ceiling | None,
) -> list[dict]:
    """One model's rows of a pass: every protocol, format and concurrency level."""
    rows = []
    levels = args.cnn_concurrency if model == "cnn" else args.concurrency
    for protocol, tensor_format in _variants(args.protocols, args.formats):
        url = server.grpc_url if protocol == "grpc" else server.url
        for concurrency in levels:
            point = (model, protocol, tensor_format, concurrency, pass_number)
            rows.append(_measure(args, server, url, point, ceiling))
            if args.anchors_jsonl:
                args.anchors_jsonl.parent.mkdir(parents=True, exist_ok=True)
                with args.anchors_jsonl.open("a") as handle:
                    handle.write(json.dumps(_anchor_row(args, rows[-1], url)) + "\n")
    return rows


def _measure(
    args: argparse.Namespace,
    server: TidalProcess,
    url: str,
    point: tuple[str, str, str, int, int],
    ceiling: Ceiling | None,
) -> dict:
    """One perf_analyzer run: ``point`` is (model, protocol, format, concurrency, pass)."""
    model, protocol, tensor_format, concurrency, pass_number = point
    load_before = os.getloadavg()[0]
    ts = time.strftime("%Y-%m-%dT%H:%M:%S")
    if server.alive():
        result = run_perf_analyzer(
            args.perf_analyzer,
            url,
            model,
            concurrency,
            protocol=protocol,
            tensor_format=tensor_format,
            cpus=args.load_cpus,
            window_ms=args.window_ms,
        )
    else:
        result = LoadResult(0, 0, 0, f"tidal exited with code {server.process.returncode}")
    row = {
        "ts": ts,
        "pass": pass_number,
        "model": model,
        "protocol": protocol,
        "format": tensor_format if protocol == "http" else "grpc",
        "concurrency": concurrency,
        **asdict(result),
        "pct_raw_ceiling": (
            100 * result.throughput / ceiling.samples_per_s
            if ceiling and not result.error
            else None
        ),
        "loadavg1_before": load_before,
        "loadavg1_after": os.getloadavg()[0],
    }
    if result.error:
        status = f"ERROR {_error_summary(result.error)}"
    else:
        status = f"{result.throughput:,.1f} infer/s, p50 {result.p50_ms:.2f} ms"
    where = f"{model} {_label(protocol, tensor_format)} c={concurrency}"
    _log(f"# pass {pass_number} {where}: {status}")
    return row


def _versions(perf_analyzer: str) -> dict[str, str]:
    import onnxruntime

    import tidal

    return {
        "tidal": tidal.__version__,
        "onnxruntime": onnxruntime.__version__,
        "perf_analyzer": _perf_analyzer_version(perf_analyzer),
    }


def format_report(record: dict) -> str:
    """The table, the ceiling it is compared with, and the RSS lines."""
    rows = record["rows"]
    passes = record["settings"]["repeat"] > 1
    header = (
        f"{'model':9} {'proto/format':12} {'conc':>4} {'infer/s':>10} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'% raw':>7}"
    )
    if passes:
        header = f"{'pass':>4} " + header
    lines = [header, "-" * len(header)]
    for row in rows:
        variant = _label(row["protocol"], row["format"])
        left = f"{row['model']:9} {variant:12} {row['concurrency']:>4}"
        if passes:
            left = f"{row['pass']:>4} " + left
        if row["error"]:
            lines.append(f"{left} ERROR {_error_summary(row['error'])[:160]}")
            continue
        pct = row["pct_raw_ceiling"]
        pct_text = "-" if pct is None else (f"{pct:.1f}%" if pct >= 1 else f"{pct:.2f}%")
        lines.append(
            f"{left} {row['throughput']:>10,.1f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
            f"{pct_text:>7}"
        )
    ceilings = record["raw_ceiling"]
    if ceilings:
        lines.append(
            "% raw = infer/s / raw ONNX Runtime ceiling (in-process, 1 thread, best batch): "
            + ", ".join(
                f"{name} {c['samples_per_s']:,.0f}/s at b={c['best_batch']}"
                for name, c in ceilings.items()
            )
        )
    rss = record["rss_mib"]

    def mib(value: float | None) -> str:
        return "gone" if value is None else f"{value:.1f}"

    lines.append(f"server RSS MiB: idle after load {mib(rss['idle'])}")
    for entry in rss["after_pass"]:
        models = [m for m in rss["after_model"] if m["pass"] == entry["pass"]]
        lines.append(
            f"server RSS MiB: pass {entry['pass']}: "
            + ", ".join(f"after {m['model']} {mib(m['rss_mib'])}" for m in models)
            + f"; end of pass {mib(entry['rss_mib'])}"
        )
    ends = [e["rss_mib"] for e in rss["after_pass"] if e["rss_mib"] is not None]
    if len(ends) > 1:
        growth = ends[-1] - ends[0]
        lines.append(f"server RSS MiB: growth from end of pass 1 to end of last pass {growth:+.1f}")
    host = record["host"]
    lines.append(
        f"load average (1 min) {host['loadavg_start'][0]:.2f} at start, "
        f"{host['loadavg_end'][0]:.2f} at end; {record['settings']['window_ms']} ms x 3 windows; "
        f"server CPUs {record['settings']['server_cpus']}, "
        f"perf_analyzer CPUs {record['settings']['load_cpus']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (Path(args.perf_analyzer).is_file() or shutil.which(args.perf_analyzer)):
        print(
            f"perf_analyzer not found at {args.perf_analyzer}: "
            "run `bash bench/setup_perf_analyzer.sh` or set PERF_ANALYZER",
            file=sys.stderr,
        )
        return 2
    record = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(format_report(record))
    print(f"wrote {args.out}")
    return 0 if all(not row["error"] for row in record["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
