"""Restricted APIs on a real server, as Triton 2.51 answers them (checked against a real
tritonserver): ``--http-restricted-api`` is 403 ``This API is restricted, expecting header
'<key>'``; ``--grpc-restricted-protocol`` is UNAVAILABLE ``This protocol is restricted,
expecting header 'triton-grpc-protocol-<key>'``, on both gRPC transports."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from .conftest import TidalServer, running_server
from .models import identity_model, identity_model_name

MODEL = identity_model_name("FP32")
ADMIN = {"admin-key": "s3cret"}
GRPC_ADMIN = {"triton-grpc-protocol-admin-key": "s3cret"}
GRPC_INFER = {"triton-grpc-protocol-infer-key": "abc"}
HTTP_REFUSED = "This API is restricted, expecting header '{}'"
GRPC_REFUSED = "This protocol is restricted, expecting header 'triton-grpc-protocol-{}'"
FLAGS = [
    "--model-control-mode",
    "explicit",
    "--load-model",
    "*",
    "--grpc-address",
    "127.0.0.1",
    "--http-restricted-api",
    "model-repository,statistics:admin-key=s3cret",
    "--http-restricted-api=model-config:Cfg-Key=v2",
    "--grpc-restricted-protocol",
    "model-repository,statistics:admin-key=s3cret",
    "--grpc-restricted-protocol",
    "inference:infer-key=abc",
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("restricted_repo")
    identity_model(path, "FP32")
    identity_model(path, "INT32")
    return path


@pytest.fixture(scope="module", params=["tidal", "aio"])
def server(request: pytest.FixtureRequest, repo: Path) -> Iterator[TidalServer]:
    with running_server(repo, flags=[*FLAGS, "--grpc-transport", request.param]) as proc:
        yield proc


@pytest.fixture(scope="module")
def http(server: TidalServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def grpc_client(server: TidalServer) -> Iterator[triton_grpc.InferenceServerClient]:
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    yield client
    client.close()


def _refused(response: httpx.Response, header: str) -> None:
    assert response.status_code == 403, response.text
    assert response.json() == {"error": HTTP_REFUSED.format(header)}


def _infer_body() -> dict:
    return {"inputs": [{"name": "INPUT0", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}


# -------------------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/repository/index"),
        ("POST", f"/v2/repository/models/{MODEL}/load"),
        ("POST", f"/v2/repository/models/{MODEL}/unload"),
        ("GET", f"/v2/models/{MODEL}/stats"),
        ("GET", f"/v2/models/{MODEL}/versions/1/stats"),
        ("GET", "/v2/models/stats"),
        ("GET", "/v2/models/no_such_model/stats"),  # refused before routing, as in Triton
        ("DELETE", "/v2/repository/index"),  # before the method check too
    ],
)
def test_http_restricted_routes_need_the_header(http, method, path):
    _refused(http.request(method, path), "admin-key")
    _refused(http.request(method, path, headers={"admin-key": "S3cret"}), "admin-key")
    _refused(http.request(method, path, headers={"admin-key": "s3cret2"}), "admin-key")
    _refused(http.request(method, path, headers={"other-key": "s3cret"}), "admin-key")


def test_http_header_opens_the_restricted_routes(http):
    response = http.post("/v2/repository/index", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert {entry["name"] for entry in response.json()} >= {MODEL}
    response = http.post("/v2/repository/index", headers={"Admin-Key": "s3cret"})
    assert response.status_code == 200  # header names are case-insensitive
    response = http.get(f"/v2/models/{MODEL}/stats", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["model_stats"][0]["name"] == MODEL
    # the value is checked, the route's own answer follows
    assert http.get("/v2/models/no_such_model/stats", headers=ADMIN).status_code == 400


def test_http_each_group_has_its_own_header(http):
    path = f"/v2/models/{MODEL}/config"
    _refused(http.get(path), "cfg-key")
    _refused(http.get(path, headers=ADMIN), "cfg-key")
    _refused(http.get("/v2/models/no_such_model/config"), "cfg-key")
    response = http.get(path, headers={"cfg-key": "v2"})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == MODEL


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2"),
        ("GET", "/v2/health/live"),
        ("GET", "/v2/health/ready"),
        ("GET", f"/v2/models/{MODEL}"),
        ("GET", f"/v2/models/{MODEL}/ready"),
    ],
)
def test_http_unrestricted_categories_stay_open(http, method, path):
    assert http.request(method, path).status_code == 200


def test_http_inference_is_open_when_only_grpc_restricts_it(http):
    response = http.post(f"/v2/models/{MODEL}/infer", json=_infer_body())
    assert response.status_code == 200, response.text


def test_tritonclient_http_with_headers_controls_models(server):
    client = triton_http.InferenceServerClient(server.url)
    name = identity_model_name("INT32")
    with pytest.raises(InferenceServerException) as info:
        client.unload_model(name)
    assert HTTP_REFUSED.format("admin-key") in str(info.value)
    client.unload_model(name, headers=ADMIN)
    assert not client.is_model_ready(name)
    client.load_model(name, headers=ADMIN)
    assert client.is_model_ready(name)
    stats = client.get_inference_statistics(name, headers=ADMIN)
    assert stats["model_stats"][0]["name"] == name
    client.close()


# -------------------------------------------------------------------------------------- gRPC


def _grpc_refused(call, header: str) -> None:
    with pytest.raises(InferenceServerException) as info:
        call()
    assert info.value.status() == "StatusCode.UNAVAILABLE"
    assert info.value.message() == GRPC_REFUSED.format(header)


def _grpc_input() -> triton_grpc.InferInput:
    data = triton_grpc.InferInput("INPUT0", [1, 2], "FP32")
    data.set_data_from_numpy(np.array([[1.0, 2.0]], np.float32))
    return data


def test_grpc_restricted_rpcs_need_the_prefixed_metadata(grpc_client):
    client = grpc_client
    for headers in (None, {"admin-key": "s3cret"}, {"triton-grpc-protocol-admin-key": "x"}):
        _grpc_refused(lambda h=headers: client.get_model_repository_index(headers=h), "admin-key")
        _grpc_refused(
            lambda h=headers: client.get_inference_statistics(MODEL, headers=h), "admin-key"
        )
        _grpc_refused(lambda h=headers: client.unload_model(MODEL, headers=h), "admin-key")
        _grpc_refused(lambda h=headers: client.load_model(MODEL, headers=h), "admin-key")
    _grpc_refused(lambda: client.infer(MODEL, [_grpc_input()]), "infer-key")
    _grpc_refused(lambda: client.infer("no_such_model", [_grpc_input()]), "infer-key")
    _grpc_refused(lambda: client.infer(MODEL, [_grpc_input()], headers=GRPC_ADMIN), "infer-key")


def test_grpc_metadata_opens_the_restricted_rpcs(grpc_client):
    client = grpc_client
    index = client.get_model_repository_index(headers=GRPC_ADMIN)
    assert MODEL in {model.name for model in index.models}
    stats = client.get_inference_statistics(MODEL, headers=GRPC_ADMIN)
    assert stats.model_stats[0].name == MODEL
    result = client.infer(MODEL, [_grpc_input()], headers=GRPC_INFER)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), [[1.0, 2.0]])
    with pytest.raises(InferenceServerException) as info:
        client.infer("no_such_model", [_grpc_input()], headers=GRPC_INFER)
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_grpc_unrestricted_rpcs_stay_open(grpc_client):
    client = grpc_client
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.get_model_metadata(MODEL).name == MODEL
    assert client.get_model_config(MODEL).config.name == MODEL  # restricted on HTTP only


@pytest.mark.parametrize("headers", [None, GRPC_INFER])
def test_grpc_stream_infer_is_restricted(server, headers):
    client = triton_grpc.InferenceServerClient(server.grpc_url)
    answers: queue.Queue = queue.Queue()
    client.start_stream(
        callback=lambda result, error: answers.put((result, error)), headers=headers
    )
    try:
        try:
            client.async_stream_infer(MODEL, [_grpc_input()])
        except InferenceServerException:
            assert headers is None  # refused already: the reason comes to the callback
        result, error = answers.get(timeout=30)
    finally:
        client.stop_stream()
        client.close()
    if headers is None:
        assert error is not None
        assert error.status() == "StatusCode.UNAVAILABLE"
        assert error.message() == GRPC_REFUSED.format("infer-key")
    else:
        assert error is None
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), [[1.0, 2.0]])


# -------------------------------------------------------------------------------- start-up


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (
            "--http-restricted-api=health:k",
            "--http-restricted-api option format is '<config name>:<setting>=<value>'. "
            "Got health:k",
        ),
        ("--http-restricted-api=health:k=", "option format is"),
        ("--http-restricted-api=bogus:k=v", "unknown restricted api 'bogus'"),
        ("--grpc-restricted-protocol=infer:k=v", "unknown restricted protocol 'infer'"),
    ],
)
def test_unusable_restriction_stops_start_up(start_server, repo, flag, message):
    proc = start_server(repo, flags=[flag], wait=False)
    assert proc.wait_exited() == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_category_in_two_groups_stops_start_up(start_server, repo):
    flags = ["--http-restricted-api=health,metadata:a=1", "--http-restricted-api=health:b=2"]
    proc = start_server(repo, flags=flags, wait=False)
    assert proc.wait_exited() == 1
    assert "restricted api 'health' can not be specified in multiple config groups" in (proc.stderr)
