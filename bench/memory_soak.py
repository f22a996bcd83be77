"""Resident memory of `tidal serve` under a stream of large requests: it must level off, not
grow with the number of requests served.

    python bench/memory_soak.py --requests 200 --elements 1000000 --out soak.json

An identity model with a dynamic shape (built here with onnx.helper) is served on a free
loopback port. Each phase sends `--requests` requests of `--elements` FP32 values (4 MB at the
default) after a warm-up of 20: HTTP binary and HTTP JSON, each on a new connection per request
(as `curl` or `requests` without a session do), then gRPC on one channel. RSS is read from /proc
after the warm-up and at the end of each phase; a phase passes when it grew by at most
`--max-growth-mib`. Prints a table and writes JSON; exits 1 when a phase fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.server_process import TidalProcess, free_port

WARM_UP = 20


def _identity_repository(root: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "n"])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (root / "ident" / "1").mkdir(parents=True)
    onnx.save(model, str(root / "ident" / "1" / "model.onnx"))
    return root


def _http_sender(port: int, body: bytes, headers: dict[str, str]) -> Callable[[], None]:
    def send() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("POST", "/v2/models/ident/infer", body, headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
        finally:
            connection.close()

    return send


def _senders(server: TidalProcess, elements: int) -> dict[str, Callable[[], None]]:
    values = np.full((1, elements), 0.5, np.float32)
    inputs = [{"name": "x", "shape": [1, elements], "datatype": "FP32"}]
    head = json.dumps(
        {
            "inputs": [{**inputs[0], "parameters": {"binary_data_size": values.nbytes}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    ).encode()
    binary = _http_sender(
        server.port,
        head + values.tobytes(),
        {"Inference-Header-Content-Length": str(len(head))},
    )
    as_json = json.dumps({"inputs": [{**inputs[0], "data": values.ravel().tolist()}]}).encode()
    json_sender = _http_sender(server.port, as_json, {"Content-Type": "application/json"})

    import tritonclient.grpc as grpcclient  # imported late: only this phase needs it

    client = grpcclient.InferenceServerClient(server.grpc_url)

    def grpc_send() -> None:
        tensor = grpcclient.InferInput("x", [1, elements], "FP32")
        tensor.set_data_from_numpy(values)
        client.infer("ident", [tensor])

    return {"http binary": binary, "http json": json_sender, "grpc": grpc_send}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--max-growth-mib", type=float, default=64.0)
    parser.add_argument("--cpus", default=None, help="taskset CPU list for the server")
    parser.add_argument("--out", type=Path, default=Path("memory_soak.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        repository = _identity_repository(Path(folder) / "models")
        server = TidalProcess([repository], args.cpus, [], grpc_port=free_port())
        try:
            for phase, send in _senders(server, args.elements).items():
                for _ in range(WARM_UP):
                    send()
                before = server.rss_mib()
                for _ in range(args.requests):
                    send()
                after = server.rss_mib()
                growth = after - before
                rows.append(
                    {
                        "phase": phase,
                        "requests": args.requests,
                        "rss_after_warm_up_mib": round(before, 1),
                        "rss_at_end_mib": round(after, 1),
                        "growth_mib": round(growth, 1),
                        "passed": growth <= args.max_growth_mib,
                    }
                )
        finally:
            server.stop()
    print(f"{'phase':12} {'requests':>8} {'RSS after warm-up':>18} {'RSS at end':>11} "
          f"{'growth':>8}  verdict (<= {args.max_growth_mib:g} MiB)")  # fmt: skip
    for row in rows:
        print(f"{row['phase']:12} {row['requests']:>8} {row['rss_after_warm_up_mib']:>14.1f} MiB "
              f"{row['rss_at_end_mib']:>7.1f} MiB {row['growth_mib']:>4.1f} MiB  "
              f"{'pass' if row['passed'] else 'FAIL'}")  # fmt: skip
    args.out.write_text(json.dumps({"elements": args.elements, "phases": rows}, indent=2) + "\n")
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
