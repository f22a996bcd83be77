"""Two processes registering the same name at once get distinct versions."""

import json
import subprocess
import sys
from pathlib import Path

from tidal.registry import ModelRegistry

from ..waiting import wait_until
from .conftest import write_tree

SRC_DIR = Path(__file__).resolve().parents[3] / "src"

_WORKER = """
import json, sys, time
from pathlib import Path
from tidal.registry import ModelRegistry

home, source, go, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
registry = ModelRegistry(home)
Path(sys.argv[5]).touch()  # opened: ready for the race
while not go.exists():
    time.sleep(0.005)
print(json.dumps([registry.register("shared", source).version for _ in range(count)]))
"""


def test_concurrent_registers_get_distinct_versions(home, tmp_path):
    ModelRegistry(home)  # the schema exists before the race starts
    go = tmp_path / "go"
    workers = []
    for index in range(2):
        ready = tmp_path / f"ready{index}"
        source = write_tree(tmp_path / f"src{index}", {"w.bin": bytes([index]) * (1 << 20)})
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", _WORKER, str(home), str(source), str(go), "8", str(ready)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={"PYTHONPATH": str(SRC_DIR), "PATH": "/usr/bin:/bin"},
            )
        )
    wait_until(lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)), "both workers")
    go.touch()
    seen = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        seen.append(json.loads(out))
    assert sorted(seen[0] + seen[1]) == list(range(1, 17))
    registry = ModelRegistry(home)
    for index, versions in enumerate(seen):
        for version in versions:
            _, _, size = registry.files("shared", version)[0]
            assert size == 1 << 20
            path = registry.download("shared", version, tmp_path / "out" / str(version))
            assert (path / "w.bin").read_bytes() == bytes([index]) * (1 << 20)
