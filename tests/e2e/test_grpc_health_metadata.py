"""Health, metadata, configuration, statistics and the repository index over gRPC, each
compared with what the same server answers over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2
from tritonclient.grpc import service_pb2 as pb

from .conftest import TidalServer, error_message, http_client

MODELS = ["add_sub_int32", "identity_bytes", "classifier", "nobatch", "autocomplete_batch"]


@pytest.fixture(scope="module")
def http(grpc_server: TidalServer) -> Iterator[httpx.Client]:
    """HTTP on the server the gRPC calls go to (statistics must be the same server's)."""
    with http_client(grpc_server) as client:
        yield client


def test_live_and_ready(grpc_client):
    assert grpc_client.is_server_live()
    assert grpc_client.is_server_ready()


def test_server_metadata_same_as_http(grpc_client, http):
    metadata = grpc_client.get_server_metadata(as_json=True)
    assert metadata == http.get("/v2").json()


@pytest.mark.parametrize("model", [*MODELS, "versioned_all"])
def test_model_metadata_same_as_http(grpc_client, http, model):
    over_grpc = grpc_client.get_model_metadata(model, as_json=True)
    over_http = http.get(f"/v2/models/{model}").json()
    for tensors in ("inputs", "outputs"):  # protobuf's JSON writes int64 as strings
        for tensor in over_grpc[tensors]:
            tensor["shape"] = [int(d) for d in tensor["shape"]]
    assert over_grpc == over_http


def test_model_metadata_of_a_version(grpc_client):
    metadata = grpc_client.get_model_metadata("versioned_all", model_version="1")
    assert metadata.name == "versioned_all"
    assert list(metadata.versions) == ["1", "2"]


@pytest.mark.parametrize(
    ("model", "version", "ready"),
    [
        ("add_sub_int32", "", True),
        ("add_sub_int32", "1", True),
        ("add_sub_int32", "2", False),
        ("versioned", "1", False),  # policy latest 1 serves only version 2
        ("versioned", "2", True),
        ("versioned_specific", "3", True),
        ("no_such_model", "", False),
    ],
)
def test_model_ready_same_as_http(grpc_client, http, model, version, ready):
    assert grpc_client.is_model_ready(model, version) is ready
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/ready"
    assert (http.get(path).status_code == 200) is ready


@pytest.mark.parametrize("model", MODELS)
def test_model_config_is_the_protobuf_http_shows(grpc_client, http, model):
    over_grpc = grpc_client.get_model_config(model).config
    over_http = json_format.ParseDict(
        http.get(f"/v2/models/{model}/config").json(), model_config_pb2.ModelConfig()
    )
    assert isinstance(over_grpc, model_config_pb2.ModelConfig)
    assert over_grpc == over_http
    assert over_grpc.name == model


def test_model_config_errors(stub):
    with pytest.raises(grpc.RpcError) as missing:
        stub.ModelConfig(pb.ModelConfigRequest(name="no_such_model"))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as version:
        stub.ModelConfig(pb.ModelConfigRequest(name="add_sub_int32", version="5"))
    assert version.value.code() is grpc.StatusCode.NOT_FOUND


def test_statistics_same_as_http(grpc_client, http):
    data = np.zeros((1, 16), np.int32)
    inputs = [
        triton_grpc.InferInput(name, [1, 16], "INT32").set_data_from_numpy(data)
        for name in ("INPUT0", "INPUT1")
    ]
    before = grpc_client.get_inference_statistics("add_sub_int32").model_stats[0]
    grpc_client.infer("add_sub_int32", inputs)
    over_grpc = grpc_client.get_inference_statistics("add_sub_int32")
    assert over_grpc.model_stats[0].inference_count == before.inference_count + 1
    over_http = http.get("/v2/models/add_sub_int32/stats").json()
    assert over_grpc == json_format.ParseDict(
        over_http, pb.ModelStatisticsResponse(), ignore_unknown_fields=True
    )
    every = grpc_client.get_inference_statistics()
    assert {"add_sub_int32", "classifier"} <= {s.name for s in every.model_stats}


def test_repository_index_same_as_http(grpc_client, http):
    over_grpc = grpc_client.get_model_repository_index(as_json=True)["models"]
    over_http = http.post("/v2/repository/index").json()
    assert over_grpc == over_http
    assert {"name": "add_sub_int32", "version": "1", "state": "READY"} in over_grpc


def test_load_and_unload_refused_as_over_http(stub, http):
    for call, request, path in (
        (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest, "load"),
        (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest, "unload"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            call(request(model_name="classifier"))
        over_http = error_message(http.post(f"/v2/repository/models/classifier/{path}"), 503)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        assert refused.value.details() == over_http


def test_repository_name_is_unsupported(stub):
    with pytest.raises(grpc.RpcError) as refused:
        stub.RepositoryIndex(pb.RepositoryIndexRequest(repository_name="other"))
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "repository_name" in refused.value.details()


# ----------------------------------------------------------------------------- serve flags


def test_allow_grpc_false_serves_http_only(tmp_path, start_server):
    proc = start_server(tmp_path, flags=["--allow-grpc=false"])
    assert proc.grpc_port is None
    assert "GRPCInferenceService" not in proc.stderr


def test_busy_grpc_port_exits_with_a_clear_error(
    tmp_path, start_server, grpc_server, grpc_transport
):
    port = str(grpc_server.grpc_port)
    flags = ["--grpc-port", port, "--grpc-transport", grpc_transport]
    proc = start_server(tmp_path, flags=flags, wait=False)
    assert proc.wait_exited() != 0
    assert f"cannot listen on 0.0.0.0:{port}" in proc.stderr
