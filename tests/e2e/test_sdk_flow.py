"""The issue's register -> deploy -> call -> update -> fail -> delete flow, through ``tidal.sdk``.

Real service processes on free loopback ports under a temporary ``TIDAL_HOME``; the model is a
tiny ONNX graph, the extra pip package a wheel the test writes by hand
(installed with ``--no-index``: no package index is contacted).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
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

from tidal.sdk import (
    Environment,
    InferenceConfig,
    LocalWebservice,
    Model,
    Webservice,
    WebserviceException,
    Workspace,
)

from .models import simple_model

# ServiceManager starts each service detached and drops its Popen handle on purpose (the
# service outlives the caller); the ResourceWarning that handle's __del__ raises is expected.
pytestmark = pytest.mark.filterwarnings(r"ignore:subprocess \d+ is still running:ResourceWarning")

DEPLOY_TIMEOUT_S = 180.0
MODEL = "tiny"

SCORE_SCRIPT = """
import json, os
import numpy as np
import tidal_sdk_extra
import tritonclient.http as httpclient

def init():
    global client
    url = os.environ.get("INFERENCE_SERVER_URL")
    client = httpclient.InferenceServerClient(url) if url else None

def run(raw_data):
    data = json.loads(raw_data)
    answer = {
        "release": RELEASE,
        "greeting": tidal_sdk_extra.greet(),
        "worker_count": os.environ.get("WORKER_COUNT"),
        "model_dir": os.environ["AZUREML_MODEL_DIR"],
    }
    if client is not None and "x" in data:
        x = np.asarray([data["x"]], dtype=np.float32)
        tensor = httpclient.InferInput("X", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        answer["y"] = client.infer("tiny", [tensor]).as_numpy("Y").tolist()[0]
    return answer
"""


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Iterator[Workspace]:
    home = tmp_path / "home"
    monkeypatch.setenv("TIDAL_HOME", str(home))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing in this flow may reach a package index
    workspace = Workspace.from_config(_write_config(tmp_path, home))
    yield workspace
    # Never leave service processes behind, whatever failed.
    for service in Webservice.list(workspace):
        with contextlib.suppress(WebserviceException):
            service.delete()


@pytest.fixture
def model(ws, tmp_path) -> Model:
    models = tmp_path / "models"
    simple_model(models / "triton", MODEL, factor=2.0)
    return Model.register(
        ws,
        model_path=models,
        model_name="tiny-multi",
        tags={"purpose": "sdk-e2e"},
        description="Y = 2 X",
        model_framework=Model.Framework.MULTI,
    )


def _write_config(tmp_path: Path, home: Path) -> Path:
    config = tmp_path / "project" / ".azureml" / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"subscription_id": "unused", "tidal_home": str(home)}))
    return config


def _build_wheel(tmp_path: Path) -> Path:
    """A one-module wheel written by hand: no build backend (``setuptools``, ``wheel``) needed."""
    return build_wheel(
        tmp_path / "wheels",
        "tidal_sdk_extra",
        "0.1",
        body="def greet():\n    return 'hello from a local wheel'\n",
    )


def _source(tmp_path: Path, release: int) -> Path:
    folder = tmp_path / f"source{release}"
    folder.mkdir()
    script = f"RELEASE = {release}\n" + textwrap.dedent(SCORE_SCRIPT)
    (folder / "score.py").write_text(script)
    return folder


def _inference_config(ws: Workspace, tmp_path: Path, release: int, wheel: Path) -> InferenceConfig:
    env = Environment.get(ws, "AzureML-Minimal").clone(f"tidal-e2e-{release}")
    env.python.conda_dependencies.add_pip_package(str(wheel))
    env.environment_variables["WORKER_COUNT"] = "1"
    return InferenceConfig(
        entry_script="score.py", source_directory=_source(tmp_path, release), environment=env
    )


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _score_status(service: Webservice, key: str | None = None) -> int:
    headers = _bearer(key) if key is not None else {}
    return httpx.post(service.scoring_uri, json={}, headers=headers, timeout=30.0).status_code


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_state(service: Webservice, wanted: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    state = service.state
    while state != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
        state = service.state
    return state


def _assert_deleted(ws: Workspace, service: Webservice) -> None:
    port, log_path = service.port, service.info.log_path
    service.delete()
    with pytest.raises(WebserviceException) as caught:
        Webservice(ws, service.name)
    assert caught.value.kind == "not_found"
    assert port is not None and _port_is_free(port)
    assert log_path is None or not Path(log_path).exists()
    assert all(s.name != service.name for s in Webservice.list(ws))


# --------------------------------------------------------------------------- tests


def test_triton_service_without_inference_config(ws, model, capsys):
    service = Model.deploy(
        ws, "tiny-triton", [model], deployment_config=LocalWebservice.deploy_configuration()
    )
    assert isinstance(service, LocalWebservice)
    service.wait_for_deployment(show_output=True, timeout_sec=DEPLOY_TIMEOUT_S)
    assert f"Service tiny-triton is Healthy: {service.scoring_uri}" in capsys.readouterr().out
    assert service.state == "Healthy"
    assert service.scoring_uri == f"http://localhost:{service.port}/"
    assert [m.id for m in service.models] == [model.id]
    primary, secondary = service.get_keys()
    assert primary and secondary and primary != secondary

    # The model's triton/ repository at the service root, over the v2 protocol, with a key.
    client = triton_http.InferenceServerClient(f"127.0.0.1:{service.port}")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    tensor = triton_http.InferInput("X", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer(MODEL, [tensor], headers=_bearer(primary))
    np.testing.assert_allclose(result.as_numpy("Y"), 2 * x)
    result = client.infer(MODEL, [tensor], headers=_bearer(secondary))
    np.testing.assert_allclose(result.as_numpy("Y"), 2 * x)
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, [tensor])
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, [tensor], headers=_bearer("wrong-key"))
    client.close()
    if service.grpc_port:
        grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{service.grpc_port}")
        grpc_input = triton_grpc.InferInput("X", list(x.shape), "FP32")
        grpc_input.set_data_from_numpy(x)
        answer = grpc_client.infer(
            MODEL, [grpc_input], headers={"authorization": f"Bearer {primary}"}
        )
        np.testing.assert_allclose(answer.as_numpy("Y"), 2 * x)
        grpc_client.close()

    # A version a service uses cannot be deleted.
    with pytest.raises(WebserviceException) as in_use:
        model.delete()
    assert in_use.value.kind == "in_use"
    assert "tiny-triton" in Webservice.list(ws, model_name=model.name)[0].name
    assert service.get_logs().strip()

    _assert_deleted(ws, service)
    model.delete()  # free again once the service is gone


@pytest.mark.slow
def test_entry_script_service_keys_update_failure_and_delete(ws, model, tmp_path):
    wheel = _build_wheel(tmp_path)
    config = _inference_config(ws, tmp_path, 1, wheel)
    started = time.monotonic()
    service = Model.deploy(
        ws,
        "tiny-score",
        [model],
        inference_config=config,
        deployment_config=LocalWebservice.deploy_configuration(),
    )
    service.wait_for_deployment(timeout_sec=DEPLOY_TIMEOUT_S)
    deploy_secs = time.monotonic() - started
    print(f"deploy with an environment to Healthy: {deploy_secs:.1f}s")
    assert service.state == "Healthy"
    assert service.scoring_uri.endswith("/score") and service.swagger_uri

    # /score with the primary key (run), then the secondary key.
    answer = service.run(json.dumps({"x": [1, 2, 3, 4]}))
    assert answer["release"] == 1
    assert answer["greeting"] == "hello from a local wheel"  # the wheel, from the environment
    assert answer["worker_count"] == "1"
    assert Path(answer["model_dir"]).is_dir()
    # The entry script called the model held once by the service's inference server.
    assert answer["y"] == [2.0, 4.0, 6.0, 8.0]
    primary, secondary = service.get_keys()
    assert service.run(json.dumps({}), key=secondary)["release"] == 1
    # Each check on a new connection: a key change applies to new connections (a kept-alive
    # one may finish on the previous generation of the service).
    assert _score_status(service) == 401
    assert _score_status(service, "nope") == 401

    # Regenerating the primary key refuses the old one at once; the secondary still works.
    service.regen_key("Primary")
    new_primary, same_secondary = service.get_keys()
    assert new_primary != primary and same_secondary == secondary
    assert _score_status(service, primary) == 401
    assert _score_status(service, new_primary) == 200
    assert _score_status(service, secondary) == 200
    assert service.run("{}")["release"] == 1
    with pytest.raises(WebserviceException) as refused:
        service.run("{}", key=primary)
    assert "401" in str(refused.value)
    with pytest.raises(WebserviceException):
        service.regen_key("Tertiary")

    # update while a client keeps calling: no request may fail during the swap.
    calls, failures = _call_during(
        service,
        new_primary,
        lambda: service.update(
            inference_config=_inference_config(ws, tmp_path, 2, wheel), wait=True
        ),
    )
    print(f"update under load: {calls} requests, {len(failures)} failed")
    assert failures == [], failures[:5]
    assert calls > 0
    assert service.state == "Healthy"
    assert service.run("{}")["release"] == 2

    # The service's process dies: state says Failed (not Healthy), with a reason.
    pid = service.info.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert _wait_for_state(service, "Failed") == "Failed"
    assert service.error

    _assert_deleted(ws, service)


def _call_during(service: Webservice, key: str, action) -> tuple[int, list[str]]:
    """Call /score in a loop on a thread while ``action`` runs; (calls made, failures)."""
    stop = threading.Event()
    failures: list[str] = []
    counter = [0]

    def hammer() -> None:
        with httpx.Client(timeout=30.0) as http:
            while not stop.is_set():
                try:
                    response = http.post(service.scoring_uri, json={}, headers=_bearer(key))
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                counter[0] += 1

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)
        action()
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(timeout=60)
    return counter[0], failures


def test_environment_that_will_not_install_fails_the_deployment(ws, model, tmp_path):
    missing = tmp_path / "nowhere" / "tidal_sdk_missing-1.0-py3-none-any.whl"
    env = Environment("broken")
    env.python.conda_dependencies.add_pip_package(str(missing))
    config = InferenceConfig(
        entry_script="score.py", source_directory=_source(tmp_path, 1), environment=env
    )
    service = Model.deploy(ws, "tiny-broken", [model], config)
    with pytest.raises(WebserviceException) as caught:
        service.wait_for_deployment(timeout_sec=DEPLOY_TIMEOUT_S)
    assert service.state == "Failed"
    # pip's own complaint reaches the caller (through the service log) ...
    assert "does not exist" in str(caught.value) or "No such file" in str(caught.value)
    assert "pip install failed" in service.get_logs()
    # ... and no half-built environment stays in the cache.
    envs = ws.home / "envs"
    assert not envs.exists() or [p for p in envs.iterdir() if p.suffix != ".lock"] == []
    _assert_deleted(ws, service)
