"""The rendered pod, run here as local processes: the init container's command fills the model
volume from a real registry, then the main container's command and environment start a real
server that must become ready, serve the models and ask for the key from the Secret.

Paths inside the pod (/models, /etc/tidal/keys, /registry) are mapped to temporary folders and
the ports to free loopback ones; everything else is taken from the rendered objects as is.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tidal.deploy.kubernetes import render
from tidal.deploy.specs import DeploymentSpec, InferenceSpec
from tidal.registry import ModelRegistry
from tidal.security.keys import KeyHashes

from .conftest import STARTED_RE, stop_process, tidal_env

EXAMPLE = Path(__file__).resolve().parents[2] / "src" / "tidal" / "examples" / "model_repository"
PRIMARY, SECONDARY = "pod-primary-key", "pod-secondary-key"
READY_TIMEOUT_S = 60.0


class Pod:
    """Where the pod's paths live on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.places = {
            "/models": root / "models",
            "/etc/tidal/keys": root / "keys",
            "/registry": root / "home",
            "/tmp": root / "tmp",
            "/app": root / "app",
        }
        for place in self.places.values():
            place.mkdir(parents=True, exist_ok=True)
        # `tidal` as the image has it, on PATH (the init command runs it through sh)
        bin_dir = root / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "tidal"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tidal "$@"\n')
        wrapper.chmod(0o755)
        self.bin_dir = bin_dir

    def path(self, text: str) -> str:
        """``text`` with every pod path replaced by its local folder."""
        # one pass: a replacement (under /tmp itself) is never replaced again
        pattern = "|".join(re.escape(inside) for inside in self.places)
        return re.sub(
            rf"(?<![\w/])({pattern})(?=/|$|:)",
            lambda match: str(self.places[match.group(1)]),
            text,
        )

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        env = tidal_env()
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        for item in container.get("env", []):
            env[item["name"]] = self.path(item["value"])
        return env


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pod, dict[str, dict[str, Any]]]:
    pod = Pod(tmp_path_factory.mktemp("pod"))
    source = pod.root / "src" / "models"
    shutil.copytree(EXAMPLE, source / "triton")
    registry = ModelRegistry(pod.places["/registry"])
    record = registry.register("m1", source, framework="Multi")
    objects = render(
        "svc",
        [record],
        inference=None,
        deployment=DeploymentSpec(compute_type="kubernetes"),
        keys_hashed=KeyHashes.of(PRIMARY, SECONDARY),
    )
    return pod, {o["kind"]: o for o in objects}


def _run_init(pod: Pod, container: dict[str, Any]) -> subprocess.CompletedProcess:
    command = [pod.path(part) for part in container["command"]]
    return subprocess.run(
        command, env=pod.env(container), capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def filled(
    rendered: tuple[Pod, dict[str, dict[str, Any]]],
) -> tuple[Pod, dict[str, dict[str, Any]]]:
    """The pod after its init container has filled the model volume."""
    pod, kinds = rendered
    (fetch,) = kinds["Deployment"]["spec"]["template"]["spec"]["initContainers"]
    first = _run_init(pod, fetch)
    assert first.returncode == 0, first.stderr
    return rendered


def test_pod_runs_as_rendered(filled: tuple[Pod, dict[str, dict[str, Any]]]) -> None:
    pod, kinds = filled
    spec = kinds["Deployment"]["spec"]["template"]["spec"]
    # The Secret's keys.json, where the volume puts it.
    (pod.places["/etc/tidal/keys"] / "keys.json").write_text(
        kinds["Secret"]["stringData"]["keys.json"]
    )
    (fetch,) = spec["initContainers"]
    again = _run_init(pod, fetch)  # a pod restarted whole keeps what it has
    assert again.returncode == 0, again.stderr
    assert (pod.places["/models"] / "m1" / "1" / "models" / "triton" / "simple").is_dir()

    container = spec["containers"][0]
    assert container["command"] == ["tidal", "serve"]
    env = pod.env(container)
    # free loopback ports instead of 8000-8002
    env.update({"TIDAL_HTTP_PORT": "0", "TIDAL_GRPC_PORT": "0", "TIDAL_METRICS_PORT": "0",
                "TIDAL_HTTP_ADDRESS": "127.0.0.1", "TIDAL_GRPC_ADDRESS": "127.0.0.1"})  # fmt: skip
    proc, port, lines = _start_container(["serve"], env, STARTED_RE)
    try:
        base = f"http://127.0.0.1:{port}"
        ready_path = container["readinessProbe"]["httpGet"]["path"]
        live_path = container["livenessProbe"]["httpGet"]["path"]
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(base_url=base, timeout=10) as client:
            while client.get(ready_path).status_code != 200:  # probes need no key
                assert time.monotonic() < deadline, "never ready"
                assert proc.poll() is None, "".join(lines)
                time.sleep(0.2)
            assert client.get(live_path).status_code == 200
            assert client.get("/v2/models/simple").status_code == 401
            for key in (PRIMARY, SECONDARY):
                answer = client.get("/v2/models/simple", headers={"Authorization": f"Bearer {key}"})
                assert answer.status_code == 200, answer.text
                assert answer.json()["name"] == "simple"
    finally:
        drain = threading_drain(proc)
        stop_process(proc, drain)


SCORE_PY = """
import json
import os


def init():
    global repository
    repository = os.path.join(os.environ["AZUREML_MODEL_DIR"], "models", "triton", "simple")


def run(raw_data):
    from lib.helpers import SCALE

    return {"scaled": json.loads(raw_data)["x"] * SCALE, "model_found": os.path.isdir(repository)}
"""


def test_scoring_pod_runs_as_rendered(
    filled: tuple[Pod, dict[str, dict[str, Any]]], tmp_path: Path
) -> None:
    pod, _ = filled
    source = tmp_path / "app"
    (source / "lib").mkdir(parents=True)
    (source / "score.py").write_text(SCORE_PY)
    (source / "lib" / "__init__.py").write_text("")
    (source / "lib" / "helpers.py").write_text("SCALE = 3\n")
    record = ModelRegistry(pod.places["/registry"]).get("m1", 1)
    objects = {
        o["kind"]: o
        for o in render(
            "scorer",
            [record],
            inference=InferenceSpec(entry_script="score.py", source_directory=source),
            deployment=DeploymentSpec(compute_type="kubernetes"),
            keys_hashed=KeyHashes.of(PRIMARY, SECONDARY),
        )
    }
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    # the ConfigMap volume, as the kubelet lays it out
    volume = next(v for v in spec["volumes"] if v["name"] == "app")
    for item in volume["configMap"]["items"]:
        target = pod.places["/app"] / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(objects["ConfigMap"]["data"][item["key"]])
    (pod.places["/etc/tidal/keys"] / "keys.json").write_text(
        objects["Secret"]["stringData"]["keys.json"]
    )
    container = spec["containers"][0]
    command = [pod.path(part) for part in container["command"]]
    assert command[:2] == ["tidal", "score"]
    command[command.index("--port") + 1] = "0"  # a free port instead of 5001
    env = pod.env(container)
    env.update({"TIDAL_HTTP_PORT": "0", "TIDAL_GRPC_PORT": "0", "TIDAL_METRICS_PORT": "0",
                "TIDAL_METRICS_ADDRESS": "127.0.0.1", "WORKER_COUNT": "1"})  # fmt: skip
    started = re.compile(r"Started ScoringService at ([0-9.]+):(\d+)")
    proc, port, _ = _start_container(command[1:], env, started)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            probe = container["readinessProbe"]["httpGet"]["path"]
            assert client.get(probe).status_code == 200  # open without a key
            assert client.post("/score", json={"x": 2}).status_code == 401
            answer = client.post(
                "/score", json={"x": 2}, headers={"Authorization": f"Bearer {SECONDARY}"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"scaled": 6, "model_found": True}
    finally:
        stop_process(proc, threading_drain(proc))


def _start_container(
    args: list[str], env: dict[str, str], started: re.Pattern[str]
) -> tuple[subprocess.Popen, int, list[str]]:
    """Run ``tidal ARGS`` as the container would; its process, the port it announced (group 2
    of ``started``) and the stderr lines read so far."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tidal", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    lines: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        match = started.search(line)
        if match:
            return proc, int(match.group(2)), lines
    stop_process(proc, threading_drain(proc))
    raise AssertionError("the container never announced its port:\n" + "".join(lines))


def threading_drain(proc: subprocess.Popen) -> Any:
    """A reader that empties the server's stderr while it stops."""
    import threading

    def read() -> None:
        assert proc.stderr is not None
        for _ in proc.stderr:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader
