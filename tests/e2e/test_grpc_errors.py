"""Errors over gRPC: malformed messages sent with the raw stub, Triton's status codes, the same
messages as over HTTP, and a server that keeps serving after every error."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from .conftest import TidalServer, error_message

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def channel(grpc_server: TidalServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(grpc_server.grpc_url) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> service_pb2_grpc.GRPCInferenceServiceStub:
    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture(autouse=True)
def _still_serving_after_each_test(stub):
    yield
    assert stub.ServerReady(pb.ServerReadyRequest()).ready, "server not ready after an error"
    response = stub.ModelInfer(_add_sub())
    assert len(response.raw_output_contents) == 2


def _tensor(name="INPUT0", datatype="INT32", shape=(1, 16), **fields):
    return pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=list(shape), **fields
    )


def _add_sub(*tensors, raw=None, model="add_sub_int32", **fields) -> pb.ModelInferRequest:
    """A valid add_sub request unless told otherwise."""
    if not tensors:
        tensors = (_tensor("INPUT0"), _tensor("INPUT1"))
    if raw is None:
        raw = [bytes(4 * int(np.prod(t.shape))) for t in tensors]
    return pb.ModelInferRequest(
        model_name=model, inputs=list(tensors), raw_input_contents=raw, **fields
    )


def _fails(call, request, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    assert caught.value.code() is code, caught.value.details()
    details = caught.value.details()
    assert details and details.strip(), "empty error message"
    return details


# ----------------------------------------------------------------------------- malformed tensors


def test_wrong_raw_size_names_the_input(stub):
    message = _fails(stub.ModelInfer, _add_sub(raw=[bytes(64), bytes(60)]), INVALID)
    assert "'INPUT1'" in message and "60 bytes" in message and "64" in message


def test_raw_and_typed_contents_together(stub):
    typed = _tensor("INPUT1", contents=pb.InferTensorContents(int_contents=[0] * 16))
    message = _fails(stub.ModelInfer, _add_sub(_tensor("INPUT0"), typed), INVALID)
    assert "'INPUT1'" in message and "both" in message


def test_raw_contents_for_some_inputs_only(stub):
    request = _add_sub(raw=[bytes(64)])
    assert "raw_input_contents" in _fails(stub.ModelInfer, request, INVALID)


def test_typed_contents_in_the_wrong_field(stub):
    tensors = [
        _tensor(name, contents=pb.InferTensorContents(fp32_contents=[0.0] * 16))
        for name in ("INPUT0", "INPUT1")
    ]
    assert "int_contents" in _fails(stub.ModelInfer, _add_sub(*tensors, raw=[]), INVALID)


def test_typed_contents_count_mismatch(stub):
    tensors = [
        _tensor(name, contents=pb.InferTensorContents(int_contents=[0] * 15))
        for name in ("INPUT0", "INPUT1")
    ]
    message = _fails(stub.ModelInfer, _add_sub(*tensors, raw=[]), INVALID)
    assert "15 elements" in message and "needs 16" in message


def test_input_without_any_data(stub):
    tensors = [_tensor("INPUT0"), _tensor("INPUT1")]
    assert "got 0 elements" in _fails(stub.ModelInfer, _add_sub(*tensors, raw=[]), INVALID)


def test_fp16_in_typed_contents(stub):
    request = _add_sub(_tensor(datatype="FP16", shape=(1, 4)), raw=[], model="identity_fp16")
    assert "raw_input_contents" in _fails(stub.ModelInfer, request, INVALID)


def test_unknown_datatype_and_negative_shape(stub):
    request = _add_sub(_tensor("INPUT0", "INT33"), _tensor("INPUT1"), raw=[b"", bytes(64)])
    assert "INT33" in _fails(stub.ModelInfer, request, INVALID)
    request = _add_sub(_tensor("INPUT0", shape=(-1, 16)), _tensor("INPUT1"), raw=[b"", bytes(64)])
    assert "non-negative" in _fails(stub.ModelInfer, request, INVALID)


def test_malformed_bytes_tensor(stub):
    request = _add_sub(
        _tensor("INPUT0", "BYTES", shape=(1, 2)),
        raw=[b"\x05\x00\x00\x00ab"],
        model="identity_bytes",
    )
    assert "runs past" in _fails(stub.ModelInfer, request, INVALID)


def test_shared_memory_input_is_unimplemented(stub):
    tensor = _tensor("INPUT0")
    tensor.parameters["shared_memory_region"].string_param = "region0"
    request = _add_sub(tensor, _tensor("INPUT1"), raw=[])
    assert "shared memory" in _fails(stub.ModelInfer, request, grpc.StatusCode.UNIMPLEMENTED)


def test_bad_request_parameter_reaches_the_scheduler(stub):
    request = _add_sub(_tensor("X", "FP32", (1, 4)), raw=[bytes(16)], model="dyn_batch")
    request.parameters["priority"].int64_param = -1
    assert "priority" in _fails(stub.ModelInfer, request, INVALID)


def test_undecodable_message(channel):
    call = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(b"\xff\xff\xff\xff\x0f not a protobuf")
    assert caught.value.code() is not grpc.StatusCode.OK


# ----------------------------------------------------------------------------- same as HTTP


def _json_tensor(name="INPUT0", shape=(1, 16)):
    count = int(np.prod(shape))
    return {"name": name, "shape": list(shape), "datatype": "INT32", "data": [0] * count}


@pytest.mark.parametrize(
    ("case", "grpc_request", "http_path", "http_body", "status", "http_status"),
    [
        (
            "missing input",
            _add_sub(_tensor("INPUT0")),
            "/v2/models/add_sub_int32/infer",
            {"inputs": [_json_tensor("INPUT0")]},
            INVALID,
            400,
        ),
        (
            "unknown input",
            _add_sub(_tensor("INPUT0"), _tensor("INPUT1"), _tensor("EXTRA")),
            "/v2/models/add_sub_int32/infer",
            {"inputs": [_json_tensor("INPUT0"), _json_tensor("INPUT1"), _json_tensor("EXTRA")]},
            INVALID,
            400,
        ),
        (
            "unknown output",
            _add_sub(outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="NOPE")]),
            "/v2/models/add_sub_int32/infer",
            {
                "inputs": [_json_tensor("INPUT0"), _json_tensor("INPUT1")],
                "outputs": [{"name": "NOPE"}],
            },
            INVALID,
            400,
        ),
        (
            "batch over max_batch_size",
            _add_sub(_tensor("INPUT0", shape=(9, 16)), _tensor("INPUT1", shape=(9, 16))),
            "/v2/models/add_sub_int32/infer",
            {"inputs": [_json_tensor("INPUT0", (9, 16)), _json_tensor("INPUT1", (9, 16))]},
            INVALID,
            400,
        ),
        (
            "wrong shape",
            _add_sub(_tensor("INPUT0", shape=(1, 15)), _tensor("INPUT1", shape=(1, 15))),
            "/v2/models/add_sub_int32/infer",
            {"inputs": [_json_tensor("INPUT0", (1, 15)), _json_tensor("INPUT1", (1, 15))]},
            INVALID,
            400,
        ),
        (
            "wrong datatype",
            _add_sub(_tensor("INPUT0", "FP32"), _tensor("INPUT1", "FP32")),
            "/v2/models/add_sub_int32/infer",
            {
                "inputs": [
                    {**_json_tensor("INPUT0"), "datatype": "FP32"},
                    {**_json_tensor("INPUT1"), "datatype": "FP32"},
                ]
            },
            INVALID,
            400,
        ),
        (
            "unknown model",
            _add_sub(model="no_such_model"),
            "/v2/models/no_such_model/infer",
            {"inputs": [_json_tensor("INPUT0"), _json_tensor("INPUT1")]},
            NOT_FOUND,
            404,
        ),
        (
            "unknown version",
            _add_sub(model_version="9"),
            "/v2/models/add_sub_int32/versions/9/infer",
            {"inputs": [_json_tensor("INPUT0"), _json_tensor("INPUT1")]},
            NOT_FOUND,
            404,
        ),
    ],
)
def test_same_error_as_http(
    stub, http, case, grpc_request, http_path, http_body, status, http_status
):
    over_grpc = _fails(stub.ModelInfer, grpc_request, status)
    over_http = error_message(http.post(http_path, json=http_body), http_status)
    assert over_grpc == over_http, case


def test_non_numeric_version(stub):
    assert "version" in _fails(stub.ModelInfer, _add_sub(model_version="one"), INVALID)
    request = pb.ModelMetadataRequest(name="add_sub_int32", version="x")
    assert "version" in _fails(stub.ModelMetadata, request, INVALID)


def test_classification_of_a_bytes_output(stub):
    output = pb.ModelInferRequest.InferRequestedOutputTensor(name="OUTPUT0")
    output.parameters["classification"].int64_param = 1
    request = _add_sub(
        _tensor("INPUT0", "BYTES", (1, 1)),
        raw=[b"\x01\x00\x00\x00a"],
        model="identity_bytes",
        outputs=[output],
    )
    assert "classified" in _fails(stub.ModelInfer, request, INVALID)


# ----------------------------------------------------------------------------- execution failure


def _reshape_request(shape):
    data = np.arange(4, dtype=np.float32)
    return pb.ModelInferRequest(
        model_name="reshape_fail",
        inputs=[_tensor("DATA", "FP32", (4,)), _tensor("SHAPE", "INT64", (2,))],
        raw_input_contents=[data.tobytes(), np.array(shape, np.int64).tobytes()],
    )


def test_model_execution_failure_is_internal(stub):
    for _ in range(3):
        _fails(stub.ModelInfer, _reshape_request([3, 3]), grpc.StatusCode.INTERNAL)
    response = stub.ModelInfer(_reshape_request([2, 2]))
    assert np.frombuffer(response.raw_output_contents[0], np.float32).tolist() == [0, 1, 2, 3]


def test_errors_through_tritonclient(grpc_server):
    client = triton_grpc.InferenceServerClient(grpc_server.grpc_url)
    try:
        data = np.zeros((1, 4), np.float32)
        inputs = [triton_grpc.InferInput("INPUT0", [1, 4], "FP32").set_data_from_numpy(data)]
        with pytest.raises(InferenceServerException) as unknown:
            client.infer("no_such_model", inputs)
        assert unknown.value.status() == "StatusCode.NOT_FOUND"
        assert "no_such_model" in unknown.value.message()
        with pytest.raises(InferenceServerException) as shape:
            client.infer("identity_fp32", inputs[:0])
        assert shape.value.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        client.close()


# ----------------------------------------------------------------------------- unsupported RPCs


@pytest.mark.parametrize(
    ("method", "request_type", "needle"),
    [
        ("SystemSharedMemoryStatus", pb.SystemSharedMemoryStatusRequest, "shared memory"),
        ("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest, "shared memory"),
        ("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest, "shared memory"),
        ("CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusRequest, "CUDA shared memory"),
        ("CudaSharedMemoryRegister", pb.CudaSharedMemoryRegisterRequest, "CUDA shared memory"),
        ("CudaSharedMemoryUnregister", pb.CudaSharedMemoryUnregisterRequest, "CUDA"),
        ("TraceSetting", pb.TraceSettingRequest, "trace"),
        ("LogSettings", pb.LogSettingsRequest, "log"),
    ],
)
def test_unsupported_rpcs_answer_unimplemented(stub, method, request_type, needle):
    details = _fails(getattr(stub, method), request_type(), grpc.StatusCode.UNIMPLEMENTED)
    assert needle in details
