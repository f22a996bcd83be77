"""CPU time a server spends per request under `wrk` load: a figure that stays meaningful on a
busy, shared machine, where requests per second do not.

    python bench/cpu_per_request.py --port 5011 --body body.json --path /score -- \
        taskset -c 0 python -m tidal score --entry_script score.py --port 5011

It starts the command, waits until ``GET /`` (or ``--health``) answers, warms up for 2 s, then
runs ``wrk -c CONC`` for ``--seconds`` and reads the user and the system CPU of the command's whole
process tree from /proc before and after. Prints one line and, with ``--out``, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")


def _children(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def _cpu_seconds(pids: set[int]) -> tuple[float, float]:
    """User and system CPU seconds of ``pids`` so far."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime
        system += int(fields[12])  # stime: the kernel's share (sockets, wake-ups)
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def _wrk(args: argparse.Namespace, seconds: float) -> dict:
    env = dict(os.environ, WRK_BODY=str(args.body), WRK_HEADERS=args.headers)
    command = ["wrk", "-t1", f"-c{args.concurrency}", f"-d{seconds:g}s", "-s", str(WRK_SCRIPT),
               f"http://127.0.0.1:{args.port}{args.path}"]  # fmt: skip
    if args.load_cpus:
        command = ["taskset", "-c", args.load_cpus, *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("WRKJSON "))
    return json.loads(line[len("WRKJSON ") :])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=Path, required=True, help="the POST body, a file")
    parser.add_argument("--headers", default="Content-Type: application/json", help="'K: V|K: V'")
    parser.add_argument("--path", default="/score")
    parser.add_argument("--health", default="/")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--load-cpus", default="1", help="taskset CPU list for wrk ('' = none)")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the server command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the server command after --")
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{args.port}{args.health}", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    print("the server did not come up", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        _wrk(args, 2)  # warm-up
        pids = _children(server.pid)
        before = _cpu_seconds(pids)
        result = _wrk(args, args.seconds)
        after = _cpu_seconds(pids | _children(server.pid))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    requests = result["requests"]
    errors = sum(v for k, v in result.items() if k.startswith("errors_"))
    user_us = (after[0] - before[0]) / max(requests, 1) * 1e6
    system_us = (after[1] - before[1]) / max(requests, 1) * 1e6
    record = {
        "label": args.label or " ".join(command),
        "requests": requests,
        "requests_per_s": requests / args.seconds,
        "cpu_us_per_request": user_us + system_us,
        "user_us_per_request": user_us,
        "system_us_per_request": system_us,
        "p50_ms": result["p50_us"] / 1000,
        "errors": errors,
        "concurrency": args.concurrency,
    }
    print(
        f"{record['label'][:40]:40s} {record['requests_per_s']:9,.0f} req/s "
        f"{record['cpu_us_per_request']:8.1f} CPU us/req (user {user_us:.1f}, system "
        f"{system_us:.1f})  p50 {record['p50_ms']:.2f} ms  "
        f"errors {errors}"
    )
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
