"""The command line: --version, serve --help, start-up failures and the serve flags."""

from __future__ import annotations

import signal
import subprocess

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

import tidal

from .conftest import STOP_TIMEOUT_S, TidalServer, run_tidal
from .models import (
    autocomplete_batch_model,
    garbage_model,
    mismatched_dims_model,
    mismatched_dtype_model,
    simple_model,
)

SERVE_FLAGS = [
    "--model-repository",
    "--http-port",
    "--http-address",
    "--exit-on-error",
    "--disable-auto-complete-config",
    "--strict-model-config",
    "--strict-readiness",
]


def test_version():
    result = run_tidal("--version", timeout=30)
    assert result.returncode == 0, result.stderr
    assert tidal.__version__ in result.stdout + result.stderr


def test_serve_help_lists_flags():
    result = run_tidal("serve", "--help", timeout=30)
    assert result.returncode == 0, result.stderr
    for flag in SERVE_FLAGS:
        assert flag in result.stdout, f"{flag} missing from serve --help"


def test_server_announces_requested_address(server):
    assert server.host == "127.0.0.1"
    assert 0 < server.port < 65536


# ----------------------------------------------------------------------------- start-up failures


def _expect_exit(args) -> TidalServer:
    proc = TidalServer(args)
    try:
        code = proc.wait_exited()
    finally:
        proc.stop()
    assert code != 0, f"expected a non-zero exit; stderr:\n{proc.stderr}"
    return proc


def _serve_args(*repos, flags=()):
    args = []
    for repo in repos:
        args += ["--model-repository", str(repo)]
    return [*args, "--http-port", "0", "--http-address", "127.0.0.1", *flags]


@pytest.mark.parametrize(
    ("builder", "model", "needle"),
    [
        (mismatched_dtype_model, "bad_dtype", "mismatched_input"),
        (mismatched_dims_model, "bad_dims", "wrong_dims_input"),
        (garbage_model, "garbage", None),
    ],
)
def test_broken_model_exits_non_zero_naming_it(tmp_path, builder, model, needle):
    simple_model(tmp_path, "good")
    builder(tmp_path)
    proc = _expect_exit(_serve_args(tmp_path))
    assert model in proc.stderr
    if needle:
        assert needle in proc.stderr


def test_disable_auto_complete_requires_config(tmp_path):
    simple_model(tmp_path, "good")
    autocomplete_batch_model(tmp_path, "no_config")
    proc = _expect_exit(_serve_args(tmp_path, flags=["--disable-auto-complete-config"]))
    assert "no_config" in proc.stderr


def test_missing_repository_exits_non_zero(tmp_path):
    _expect_exit(_serve_args(tmp_path / "does_not_exist"))


# ------------------------------------------------------------------------ --exit-on-error=false


def _infer_simple(client: httpx.Client, model: str):
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    return client.post(f"/v2/models/{model}/infer", json=body)


def test_exit_on_error_false_keeps_serving(tmp_path, start_server):
    repo_a, repo_b = tmp_path / "a", tmp_path / "b"
    simple_model(repo_a, "good_a", 2.0)
    mismatched_dtype_model(repo_a)
    mismatched_dims_model(repo_a)
    garbage_model(repo_a)
    autocomplete_batch_model(repo_a, "no_config")
    simple_model(repo_b, "good_b", 5.0)
    broken = ["bad_dtype", "bad_dims", "garbage", "no_config"]

    proc = start_server(
        repo_a,
        repo_b,
        flags=[
            "--exit-on-error=false",
            "--disable-auto-complete-config",
            "--strict-readiness=false",
        ],
    )
    with httpx.Client(base_url=proc.base_url, timeout=30) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        for model, factor in (("good_a", 2.0), ("good_b", 5.0)):
            assert client.get(f"/v2/models/{model}/ready").status_code == 200
            response = _infer_simple(client, model)
            assert response.status_code == 200, response.text
            data = response.json()["outputs"][0]["data"]
            assert data == (np.array([1, 2, 3, 4], np.float32) * factor).tolist()
        for model in broken:
            assert client.get(f"/v2/models/{model}/ready").status_code != 200, model
            assert _infer_simple(client, model).status_code >= 400, model
        assert client.get("/v2/health/ready").status_code == 200
    for model in broken:
        assert model in proc.stderr, f"no log line names {model}"


def test_strict_readiness_reports_failed_model(tmp_path, start_server):
    simple_model(tmp_path, "good")
    mismatched_dtype_model(tmp_path)
    autocomplete_batch_model(tmp_path, "no_config")
    proc = start_server(tmp_path, flags=["--exit-on-error=false", "--strict-model-config=false"])
    with httpx.Client(base_url=proc.base_url, timeout=30) as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/models/good/ready").status_code == 200
        assert client.get("/v2/models/bad_dtype/ready").status_code != 200
        # --strict-model-config=false keeps auto-complete on.
        assert client.get("/v2/models/no_config/ready").status_code == 200
        assert client.get("/v2/models/no_config/config").json()["max_batch_size"] == 4
        # Triton's strict readiness (the default): not ready while a model failed to load.
        assert client.get("/v2/health/ready").status_code != 200


def test_sigterm_stops_the_server(tmp_path, start_server):
    simple_model(tmp_path, "good")
    proc = start_server(tmp_path)
    with httpx.Client(base_url=proc.base_url, timeout=30) as client:
        assert client.get("/v2/health/ready").status_code == 200
    proc.proc.send_signal(signal.SIGTERM)
    try:
        code = proc.proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail("server did not exit within 15 s of SIGTERM")
    assert code in (0, -signal.SIGTERM), proc.stderr


# ----------------------------------------------------------------------------- TIDAL_* variables


def test_restricted_api_variables_take_groups_separated_by_semicolons(tmp_path):
    # APIS:KEY=VALUE holds a ':', so these two variables split their groups at ';' (paths,
    # as TIDAL_MODEL_REPOSITORY's, still split at ':').
    first, second = tmp_path / "a", tmp_path / "b"
    simple_model(first, "m1")
    simple_model(second, "m2")
    env = {
        "TIDAL_MODEL_REPOSITORY": f"{first}:{second}",
        "TIDAL_HTTP_RESTRICTED_API": "model-repository:admin-key=s3cret;statistics:stats-key=a=b",
        "TIDAL_GRPC_RESTRICTED_PROTOCOL": "model-repository:admin-key=s3cret",
    }
    proc = TidalServer(
        ["--http-port", "0", "--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1"],
        env=env,
    )
    try:
        proc.wait_started()
        with httpx.Client(base_url=proc.base_url, timeout=30) as client:
            assert client.get("/v2/models/m1/ready").status_code == 200
            assert client.get("/v2/models/m2/ready").status_code == 200
            refused = client.post("/v2/repository/index")
            assert refused.status_code == 403, refused.text
            assert refused.json() == {
                "error": "This API is restricted, expecting header 'admin-key'"
            }
            allowed = client.post("/v2/repository/index", headers={"admin-key": "s3cret"})
            assert allowed.status_code == 200, allowed.text
            # The value is everything after the first '=' of its group.
            assert client.get("/v2/models/m1/stats").status_code == 403
            stats = client.get("/v2/models/m1/stats", headers={"stats-key": "a=b"})
            assert stats.status_code == 200, stats.text
        grpc_client = triton_grpc.InferenceServerClient(proc.grpc_url)
        try:
            with pytest.raises(InferenceServerException) as caught:
                grpc_client.get_model_repository_index()
            assert caught.value.status() == "StatusCode.UNAVAILABLE"
            index = grpc_client.get_model_repository_index(
                headers={"triton-grpc-protocol-admin-key": "s3cret"}
            )
            assert {m.name for m in index.models} == {"m1", "m2"}
        finally:
            grpc_client.close()
    finally:
        proc.stop()
