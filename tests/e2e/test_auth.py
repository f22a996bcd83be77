"""Bearer-key authentication on a real server: the HTTP and gRPC matrices (no key, wrong key,
primary, secondary, open health routes) and start-up with unusable keys files."""

from __future__ import annotations

import json
import os
import queue
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from .conftest import TidalServer, infer_input, run_tidal, running_server
from .models import identity_model, identity_model_name

MODEL = identity_model_name("FP32")
WRONG = "not-the-key"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Keys made by the real ``tidal keys generate``: the plain keys and the file's path."""
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    done = run_tidal("keys", "generate", "--out", str(path))
    assert done.returncode == 0, done.stderr
    plain = json.loads(done.stdout)
    return {"file": path, "primary": plain["primary_key"], "secondary": plain["secondary_key"]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth_repo")
    identity_model(path, "FP32")
    return path


@pytest.fixture(scope="module")
def auth_server(repo: Path, keys: dict[str, object]) -> Iterator[TidalServer]:
    with running_server(repo, flags=_auth_flags(keys)) as proc:
        yield proc


@pytest.fixture(scope="module")
def grpc_auth_server(
    grpc_transport: str, auth_server: TidalServer, repo: Path, keys: dict[str, object]
) -> Iterator[TidalServer]:
    """``auth_server``, or one like it, serving gRPC on ``grpc_transport``."""
    if grpc_transport == (os.environ.get("TIDAL_E2E_GRPC_TRANSPORT") or "tidal"):
        yield auth_server
        return
    flags = [*_auth_flags(keys), "--grpc-transport", grpc_transport]
    with running_server(repo, flags=flags) as proc:
        yield proc


def _auth_flags(keys: dict[str, object]) -> list[str]:
    return ["--auth-keys-file", str(keys["file"]), "--grpc-address", "127.0.0.1"]


@pytest.fixture(scope="module")
def http(auth_server: TidalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=auth_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(grpc_auth_server: TidalServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(grpc_auth_server.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def bearer(key: object) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


# ----------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize("path", ["/v2", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/config"])
@pytest.mark.parametrize(
    "headers",
    [{}, bearer(WRONG), {"authorization": "Basic dXNlcjpwYXNz"}, {"authorization": "Bearer"}],
    ids=["none", "wrong", "basic", "empty"],
)
def test_http_refuses_without_a_valid_key(
    http: httpx.Client, path: str, headers: dict[str, str]
) -> None:
    response = http.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "key" in response.json()["error"]


@pytest.mark.parametrize("which", ["primary", "secondary"])
def test_http_accepts_primary_and_secondary(
    http: httpx.Client, keys: dict[str, object], which: str
) -> None:
    response = http.get(f"/v2/models/{MODEL}", headers=bearer(keys[which]))
    assert response.status_code == 200
    assert response.json()["name"] == MODEL
    scheme_case = http.get("/v2", headers={"authorization": f"bearer  {keys[which]}"})
    assert scheme_case.status_code == 200


def test_http_refuses_before_routing(http: httpx.Client) -> None:
    """Without a key, a missing model or a bad method reveal nothing: 401 for all."""
    assert http.get("/v2/models/no_such_model").status_code == 401
    assert http.delete("/v2/models/no_such_model").status_code == 401
    assert http.post(f"/v2/models/{MODEL}/infer", content=b"{not json").status_code == 401


@pytest.mark.parametrize("path", ["/v2/health/live", "/v2/health/ready", "/v2/health/ready/"])
def test_http_health_is_open(http: httpx.Client, path: str) -> None:
    assert http.get(path).status_code == 200
    assert http.get(path, headers=bearer(WRONG)).status_code == 200


def test_tritonclient_http_with_and_without_key(
    auth_server: TidalServer, keys: dict[str, object]
) -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    with triton_http.InferenceServerClient(auth_server.url) as client:
        assert client.is_server_ready()  # open health route
        with pytest.raises(InferenceServerException) as refused:
            client.infer(MODEL, [infer_input("INPUT0", data)])
        assert "401" in str(refused.value) or "key" in str(refused.value)
        result = client.infer(
            MODEL, [infer_input("INPUT0", data)], headers=bearer(keys["secondary"])
        )
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


# ----------------------------------------------------------------------------- gRPC


def test_grpc_refuses_without_a_valid_key(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    for metadata in ((), (("authorization", f"Bearer {WRONG}"),)):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "key" in refused.value.details()


def test_grpc_health_is_open(stub: service_pb2_grpc.GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
    assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready


def test_grpc_stream_refuses_without_a_key(
    stub: service_pb2_grpc.GRPCInferenceServiceStub,
) -> None:
    calls = stub.ModelStreamInfer(iter([pb.ModelInferRequest(model_name=MODEL)]), timeout=10)
    with pytest.raises(grpc.RpcError) as refused:
        list(calls)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize("which", ["primary", "secondary"])
def test_tritonclient_grpc_with_key(
    grpc_auth_server: TidalServer, keys: dict[str, object], which: str
) -> None:
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    tensor = triton_grpc.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    with triton_grpc.InferenceServerClient(grpc_auth_server.grpc_url) as client:
        headers = bearer(keys[which])
        assert client.get_server_metadata(headers=headers).name
        result = client.infer(MODEL, [tensor], headers=headers)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)
        with pytest.raises(InferenceServerException) as refused:
            client.infer(MODEL, [tensor])
        assert "UNAUTHENTICATED" in str(refused.value.status())


def test_tritonclient_grpc_stream_with_key(
    grpc_auth_server: TidalServer, keys: dict[str, object]
) -> None:
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    tensor = triton_grpc.InferInput("INPUT0", [1, 4], "FP32").set_data_from_numpy(data)
    results: queue.Queue = queue.Queue()
    with triton_grpc.InferenceServerClient(grpc_auth_server.grpc_url) as client:
        client.start_stream(
            lambda result, error: results.put((result, error)), headers=bearer(keys["primary"])
        )
        client.async_stream_infer(MODEL, [tensor])
        result, error = results.get(timeout=10)
        client.stop_stream()
    assert error is None, error
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


# ----------------------------------------------------------------------------- configuration


def test_health_can_be_closed(
    start_server, repo: Path, keys: dict[str, object], grpc_transport: str
) -> None:
    flags = ["--auth-keys-file", str(keys["file"]), "--auth-open-path", ""]
    proc = start_server(repo, flags=[*flags, "--grpc-transport", grpc_transport])
    with httpx.Client(base_url=proc.base_url, timeout=30) as client:
        assert client.get("/v2/health/ready").status_code == 401
        assert client.get("/v2/health/ready", headers=bearer(keys["primary"])).status_code == 200
    with grpc.insecure_channel(proc.grpc_url) as channel:
        health = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            health.ServerLive(pb.ServerLiveRequest(), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        metadata = (("authorization", f"Bearer {keys['primary']}"),)
        assert health.ServerLive(pb.ServerLiveRequest(), metadata=metadata, timeout=10).live


def test_auth_is_off_by_default(http_default: httpx.Client) -> None:
    assert http_default.get("/v2").status_code == 200


@pytest.fixture
def http_default(server: TidalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the keys file"),
        ("{not json", "is not JSON"),
        ('{"primary_key_sha256": "ab"}', "lacks secondary_key_sha256"),
        ('{"primary_key_sha256": "ab", "secondary_key_sha256": "cd"}', "64 hex digits"),
    ],
)
def test_unusable_keys_file_stops_start_up(
    start_server, repo: Path, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content)
    proc = start_server(repo, flags=["--auth-keys-file", str(path)], wait=False)
    assert proc.wait_exited() == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------ model control and admin routes need a key too

ADMIN_ROUTES = [
    ("POST", "/v2/repository/index"),
    ("POST", f"/v2/repository/models/{MODEL}/load"),
    ("POST", f"/v2/repository/models/{MODEL}/unload"),
    ("GET", f"/v2/models/{MODEL}/stats"),
    ("GET", "/v2/models/stats"),
    ("GET", "/v2/logging"),
    ("POST", "/v2/trace/setting"),
]


def test_no_admin_route_is_open_by_default() -> None:
    from tidal.security import DEFAULT_OPEN_PATHS, BearerAuth
    from tidal.security.keys import KeyHashes

    auth = BearerAuth(KeyHashes("0" * 64, "1" * 64))
    assert set(DEFAULT_OPEN_PATHS) == {"/", "/v2/health/live", "/v2/health/ready"}
    for _, path in ADMIN_ROUTES:
        assert not auth.is_open(path), path


def test_explicit_mode_model_control_needs_a_key(
    start_server, repo: Path, keys: dict[str, object], grpc_transport: str
) -> None:
    """With keys, loading a model (which runs its code) is no open door: every admin route
    is 401 without a key, over HTTP and gRPC, and works with one."""
    flags = [
        "--auth-keys-file",
        str(keys["file"]),
        "--model-control-mode",
        "explicit",
        "--load-model",
        MODEL,
        "--grpc-address",
        "127.0.0.1",
        "--grpc-transport",
        grpc_transport,
    ]
    proc = start_server(repo, flags=flags)
    key = bearer(str(keys["primary"]))
    with httpx.Client(base_url=proc.base_url, timeout=30) as client:
        for method, path in ADMIN_ROUTES:
            for headers in ({}, bearer(WRONG)):
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
        assert client.post("/v2/repository/index", headers=key).status_code == 200
        assert client.get(f"/v2/models/{MODEL}/stats", headers=key).status_code == 200
        assert client.post(f"/v2/repository/models/{MODEL}/unload", headers=key).status_code == 200
        assert client.get(f"/v2/models/{MODEL}/ready", headers=key).status_code == 400
        assert client.post(f"/v2/repository/models/{MODEL}/load", headers=key).status_code == 200
        assert client.get(f"/v2/models/{MODEL}/ready", headers=key).status_code == 200
    grpc_client = triton_grpc.InferenceServerClient(proc.grpc_url)
    calls = [
        lambda h: grpc_client.get_model_repository_index(headers=h),
        lambda h: grpc_client.load_model(MODEL, headers=h),
        lambda h: grpc_client.unload_model(MODEL, headers=h),
        lambda h: grpc_client.get_inference_statistics(MODEL, headers=h),
        lambda h: grpc_client.get_log_settings(headers=h),
        lambda h: grpc_client.get_trace_settings(headers=h),
    ]
    for call in calls:
        with pytest.raises(InferenceServerException) as info:
            call(None)
        assert info.value.status() == "StatusCode.UNAUTHENTICATED"
    assert grpc_client.get_model_repository_index(headers={"authorization": key["authorization"]})
    grpc_client.close()
