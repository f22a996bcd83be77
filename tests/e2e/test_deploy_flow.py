"""The issue's deployment flow through the CLI: register -> deploy -> call -> update -> kill ->
delete, with real service processes on free ports under a temporary ``TIDAL_HOME``.

The extra pip package of the entry-script service is a wheel the test builds by hand and pip
installs with ``--no-index``: no package index is contacted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tests.unit.deploy.wheels import build_wheel
from tritonclient.utils import InferenceServerException

from .conftest import tidal_env
from .models import simple_model

TIMEOUT_S = 240.0

SCORE_SCRIPT = """
import json, os
import numpy as np
import tidal_deploy_extra
import tritonclient.http as httpclient

def init():
    global client
    client = httpclient.InferenceServerClient(os.environ["INFERENCE_SERVER_URL"])

def run(raw_data):
    data = json.loads(raw_data)
    x = np.asarray([data["x"]], dtype=np.float32)
    tensor = httpclient.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    y = client.infer("tiny", [tensor]).as_numpy("Y").tolist()[0]
    return {"release": RELEASE, "extra": tidal_deploy_extra.VERSION, "y": y,
            "workers": os.environ.get("WORKER_COUNT"),
            "model_dir": os.environ["AZUREML_MODEL_DIR"]}
"""


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    # Never leave service processes behind, whatever failed.
    listing = _tidal(home, "service", "list", "-o", "json")
    for service in json.loads(listing.stdout or "[]"):
        _tidal(home, "service", "delete", "-n", service["name"])


def _tidal(home: Path, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    env = tidal_env()
    env["TIDAL_HOME"] = str(home)
    env["PIP_NO_INDEX"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "tidal", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def _show(home: Path, name: str) -> dict:
    return json.loads(_ok(_tidal(home, "service", "show", "-n", name, "-o", "json")))


def _keys(home: Path, name: str) -> tuple[str, str]:
    keys = json.loads(_ok(_tidal(home, "service", "keys", "-n", name, "-o", "json")))
    return keys["primaryKey"], keys["secondaryKey"]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def _wait_until(check, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def _during(action, url: str, body: dict, headers: dict) -> tuple[list[str], list[dict]]:
    """Run ``action`` while a keep-alive client POSTs ``body`` in a loop; failures, answers."""
    failures: list[str] = []
    answers: list[dict] = []
    stop = threading.Event()

    def call_in_a_loop() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    response = client.post(url, json=body, headers=headers)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text}")
                else:
                    answers.append(response.json())

    caller = threading.Thread(target=call_in_a_loop)
    caller.start()
    try:
        time.sleep(0.5)
        action()
        time.sleep(1.0)
    finally:
        stop.set()
        caller.join(30)
    return failures, answers


def _register_tiny(home: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    simple_model(models / "triton", "tiny", factor=2.0)
    _ok(_tidal(home, "model", "register", "-n", "tiny-multi", "-p", str(models), "--framework",
               "Multi"))  # fmt: skip


@pytest.mark.slow
def test_v2_service_with_keys_then_killed_and_deleted(home: Path, tmp_path: Path) -> None:
    _register_tiny(home, tmp_path)
    out = _ok(_tidal(home, "deploy", "-n", "v2svc", "-m", "tiny-multi:1", "-o", "json"))
    info = json.loads(out)
    assert info["state"] == "Healthy", info
    assert info["models"] == ["tiny-multi:1"]
    port, grpc_port = info["port"], info["grpcPort"]
    primary, secondary = _keys(home, "v2svc")

    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    client = triton_http.InferenceServerClient(f"localhost:{port}")
    tensor = triton_http.InferInput("X", [1, 4], "FP32")
    tensor.set_data_from_numpy(x)
    for key in (primary, secondary):
        result = client.infer("tiny", [tensor], headers={"Authorization": f"Bearer {key}"})
        np.testing.assert_allclose(result.as_numpy("Y"), x * 2)
    with pytest.raises(InferenceServerException):
        client.infer("tiny", [tensor])  # no key
    # keys on every route, health included
    assert httpx.get(f"http://localhost:{port}/v2/health/ready").status_code == 401

    grpc_client = triton_grpc.InferenceServerClient(f"localhost:{grpc_port}")
    grpc_tensor = triton_grpc.InferInput("X", [1, 4], "FP32")
    grpc_tensor.set_data_from_numpy(x)
    result = grpc_client.infer(
        "tiny", [grpc_tensor], headers={"authorization": f"Bearer {primary}"}
    )
    np.testing.assert_allclose(result.as_numpy("Y"), x * 2)

    # a second service on the same port is refused with a clear error
    taken = _tidal(home, "deploy", "-n", "other", "-m", "tiny-multi:1", "--port", str(port))
    assert taken.returncode == 1 and f"port {port} is not available" in taken.stderr
    assert "Traceback" not in taken.stderr
    # so is a second deploy of the same name without --overwrite
    again = _tidal(home, "deploy", "-n", "v2svc", "-m", "tiny-multi:1")
    assert again.returncode == 1 and "--overwrite" in again.stderr

    # the registry refuses to delete a model a service uses
    refused = _tidal(home, "model", "delete", "tiny-multi:1")
    assert refused.returncode == 1

    # an update under a keep-alive client's loop: no failed request
    infer = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    failures, answered = _during(
        lambda: _ok(_tidal(home, "service", "update", "-n", "v2svc", "-m", "tiny-multi:1")),
        f"http://localhost:{port}/v2/models/tiny/infer",
        infer,
        {"Authorization": f"Bearer {primary}"},
    )
    print(f"v2 update: {len(answered)} requests, {len(failures)} failed")
    assert failures == [] and answered
    info = _show(home, "v2svc")
    assert info["state"] == "Healthy" and info["grpcPort"] != grpc_port

    os.kill(info["pid"], signal.SIGKILL)
    shown = _show(home, "v2svc")
    assert shown["state"] == "Failed", shown
    assert str(info["pid"]) in shown["error"]
    listed = json.loads(_ok(_tidal(home, "service", "list", "-o", "json")))
    assert [s["state"] for s in listed] == ["Failed"]
    assert _wait_until(lambda: _port_free(port)), "the servers outlived their host"

    _ok(_tidal(home, "service", "delete", "-n", "v2svc"))
    assert not (home / "services" / "v2svc").exists()
    assert json.loads(_ok(_tidal(home, "service", "list", "-o", "json"))) == []
    missing = _tidal(home, "service", "show", "-n", "v2svc")
    assert missing.returncode == 1 and "not found" in missing.stderr


def _app(tmp_path: Path, release: int) -> Path:
    folder = tmp_path / f"app{release}"
    folder.mkdir()
    (folder / "score.py").write_text(f"RELEASE = {release}\n" + textwrap.dedent(SCORE_SCRIPT))
    return folder


def _configs(tmp_path: Path, release: int, wheel: Path) -> tuple[Path, Path]:
    source = _app(tmp_path, release)
    inference = tmp_path / f"inference-config{release}.json"
    inference.write_text(
        json.dumps(
            {
                "entryScript": "score.py",
                "sourceDirectory": str(source),
                "environment": {
                    "name": "scoring-env",
                    "python": {
                        "conda_dependencies": {
                            "dependencies": ["python=3.10", {"pip": [str(wheel)]}]
                        }
                    },
                },
            }
        )
    )
    deployment = tmp_path / "deploymentconfig.json"
    deployment.write_text(
        json.dumps(
            {
                "computeType": "local",
                "environmentVariables": {"WORKER_COUNT": "2"},
                "scoringTimeoutMs": 20000,
                "maxConcurrentRequestsPerContainer": 8,
                "someAzureOnlyField": 1,
            }
        )
    )
    return inference, deployment


@pytest.mark.slow
def test_entry_script_service_keys_update_and_failure(home: Path, tmp_path: Path) -> None:
    _register_tiny(home, tmp_path)
    wheel = build_wheel(tmp_path / "wheels", "tidal_deploy_extra", "1.5")
    inference, deployment = _configs(tmp_path, 1, wheel)
    deployed = _tidal(
        home, "deploy", "-n", "scorer", "-m", "tiny-multi:1", "--ic", str(inference),
        "--dc", str(deployment),
    )  # fmt: skip
    text = _ok(deployed)
    assert "someAzureOnlyField" in deployed.stderr  # ignored with a warning
    info = _show(home, "scorer")
    assert info["state"] == "Healthy", info
    uri = info["scoringUri"]
    assert uri.endswith("/score") and "Authorization: Bearer" in text
    primary, secondary = _keys(home, "scorer")

    body = {"x": [1.0, 2.0, 3.0, 4.0]}
    for key in (primary, secondary):
        response = httpx.post(uri, json=body, headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["y"] == [2.0, 4.0, 6.0, 8.0]
        assert answer["release"] == 1 and answer["extra"] == "1.5" and answer["workers"] == "2"
        assert answer["model_dir"].endswith("azureml-models/tiny-multi/1")
    assert httpx.post(uri, json=body).status_code == 401
    assert httpx.get(info["swaggerUri"], headers={"Authorization": f"Bearer {primary}"}).is_success
    ran = json.loads(_ok(_tidal(home, "service", "run", "-n", "scorer", "--input-data",
                                json.dumps(body))))  # fmt: skip
    assert ran["y"] == [2.0, 4.0, 6.0, 8.0]

    regen = json.loads(
        _ok(_tidal(home, "service", "regen-key", "-n", "scorer", "--key", "primary", "-o", "json"))
    )
    assert regen["primaryKey"] != primary and regen["secondaryKey"] == secondary
    old = httpx.post(uri, json=body, headers={"Authorization": f"Bearer {primary}"})
    assert old.status_code == 401
    fresh = httpx.post(uri, json=body, headers={"Authorization": f"Bearer {regen['primaryKey']}"})
    assert fresh.status_code == 200

    # update while a keep-alive client calls in a loop: not one request may fail
    new_inference, _ = _configs(tmp_path, 2, wheel)
    failures, answers = _during(
        lambda: _ok(_tidal(home, "service", "update", "-n", "scorer", "--ic", str(new_inference))),
        uri,
        body,
        {"Authorization": f"Bearer {secondary}"},
    )
    print(f"update: {len(answers)} requests, {len(failures)} failed")
    assert failures == []
    releases = [answer["release"] for answer in answers]
    assert releases[0] == 1 and releases[-1] == 2
    assert _show(home, "scorer")["state"] == "Healthy"

    logs = _ok(_tidal(home, "service", "logs", "-n", "scorer", "--tail", "5"))
    assert 0 < len(logs.splitlines()) <= 5

    pid, port = info["pid"], info["port"]
    os.kill(pid, signal.SIGKILL)
    assert _show(home, "scorer")["state"] == "Failed"
    _ok(_tidal(home, "service", "delete", "-n", "scorer"))
    assert _port_free(port)
    assert not (home / "services" / "scorer").exists()
