"""`tidal score` against azmlinfsrv in alternating rounds, on the same `score.py`, body, pinning and
`wrk` settings: requests/s and CPU per request of each, and their ratio round by round.

On a shared machine one long run of each server lets a burst of other work land on either side;
alternating short rounds and taking the median ratio does not. Each round runs
`bench/cpu_per_request.py` once per server (its own start, 2 s warm-up, then `--seconds` measured).

    python bench/peers/scoring_rounds.py --anchors /tmp/anchors --rounds 5 --out rounds.json

Needs a set-up copy of bench-anchors (`setup_tools.sh azml` for `tools/venv-azml`) and `wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent


def _body(anchors: Path) -> Path:
    """The anchors' 1x784 JSON body for score.py, written to a temporary file."""
    code = (
        "import sys, payloads; body, _ = payloads.azml_json((1, 784)); "
        "sys.stdout.buffer.write(body if isinstance(body, bytes) else body.encode())"
    )
    python = anchors / "tools" / "venv-azml" / "bin" / "python"
    data = subprocess.run(
        [str(python), "-c", code], cwd=anchors, capture_output=True, check=True
    ).stdout
    path = Path(tempfile.mkstemp(prefix="mlp_body_", suffix=".json")[1])
    path.write_bytes(data)
    return path


def _measure(label: str, port: int, body: Path, seconds: float, command: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, str(BENCH / "cpu_per_request.py"), "--port", str(port),
             "--body", str(body), "--seconds", str(seconds), "--concurrency", "8",
             "--label", label, "--out", out.name, "--", *command],
            check=True,
        )  # fmt: skip
        return json.loads(Path(out.name).read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anchors", type=Path, default=Path(os.environ.get("ANCHORS", "")))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("scoring_rounds.json"))
    args = parser.parse_args()
    anchors = args.anchors.resolve()
    azml = anchors / "tools" / "venv-azml" / "bin" / "azmlinfsrv"
    if not azml.exists():
        parser.error(f"{azml} is missing: run `bash setup_tools.sh azml` in the anchors' copy")
    script, models = anchors / "azml" / "score.py", anchors / "models"
    os.environ.update(AZML_BENCH_MODEL="mlp", ORT_THREADS="1")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p
    )
    servers = {
        "azmlinfsrv": (5001, ["taskset", "-c", "0", str(azml), "--entry_script", str(script),
                              "--model_dir", str(models), "--port", "5001",
                              "--health_port", "5002", "--worker_count", "1"]),
        "tidal": (5011, ["taskset", "-c", "0", sys.executable, "-m", "tidal", "score",
                         "--entry_script", str(script), "--model_dir", str(models),
                         "--host", "127.0.0.1", "--port", "5011", "--worker_count", "1"]),
    }  # fmt: skip
    body = _body(anchors)
    rounds = []
    try:
        for number in range(1, args.rounds + 1):
            row = {
                name: _measure(f"{name} r{number}", port, body, args.seconds, command)
                for name, (port, command) in servers.items()
            }
            row["ratio"] = row["tidal"]["requests_per_s"] / row["azmlinfsrv"]["requests_per_s"]
            rounds.append(row)
    finally:
        body.unlink()
    ratios = [row["ratio"] for row in rounds]
    print(f"\n{'round':>5} {'azmlinfsrv req/s':>17} {'CPU us':>7} {'tidal req/s':>12} "
          f"{'CPU us':>7} {'ratio':>6}")  # fmt: skip
    for number, row in enumerate(rounds, 1):
        a, t = row["azmlinfsrv"], row["tidal"]
        print(f"{number:>5} {a['requests_per_s']:>17,.0f} {a['cpu_us_per_request']:>7.1f} "
              f"{t['requests_per_s']:>12,.0f} {t['cpu_us_per_request']:>7.1f} "
              f"{row['ratio']:>5.2f}x")  # fmt: skip
    median = statistics.median(ratios)
    print(f"median ratio {median:.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x)")
    args.out.write_text(json.dumps({"rounds": rounds, "median_ratio": median}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
