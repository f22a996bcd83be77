"""CPU time of an entry script's own ``run()`` (plus JSON-encoding its answer), called in a loop
in this process: the floor under any scoring server's CPU per request for that script.

    AZUREML_MODEL_DIR=models taskset -c 0 python bench/script_cost.py score.py body.json
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

import orjson


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("script")
    parser.add_argument("body", help="a file holding one request body")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("entry_script", args.script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.init()
    with open(args.body, encoding="utf-8") as file:
        body = file.read()
    for _ in range(args.rounds):
        started = time.process_time()
        for _ in range(args.calls):
            orjson.dumps(module.run(body), option=orjson.OPT_SERIALIZE_NUMPY)
        spent = time.process_time() - started
        print(f"run() + encode: {spent / args.calls * 1e6:.1f} CPU us per call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
