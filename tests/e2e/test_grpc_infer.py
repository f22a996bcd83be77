"""Inference over gRPC through ``tritonclient.grpc`` (sync, async callbacks, asyncio) and raw
stub calls, with every result checked against the same request over HTTP."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Iterator

import grpc
import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
import tritonclient.http as triton_http
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from .conftest import TidalServer, serialize_bytes
from .models import CLASSIFIER_LABELS, DATATYPES, identity_model_name

RNG = np.random.default_rng(20240612)
MAX_MESSAGE = 2**31 - 1


@pytest.fixture(scope="module")
def stub(grpc_server: TidalServer) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
    ]
    with grpc.insecure_channel(grpc_server.grpc_url, options=options) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


# ----------------------------------------------------------------------------- helpers


def _sample(datatype: str) -> np.ndarray:
    """A [2, 3] sample holding the extremes of each datatype."""
    if datatype == "BOOL":
        return np.array([[True, False, True], [False, False, True]])
    if datatype == "BYTES":
        # ONNX Runtime carries strings as text, so only UTF-8 round-trips (NULs included).
        return np.array([[b"\x00\xc3\xa9\x01", b"", b"x" * 300], [b"a", b"\x00", b"\xe2\x98\x83"]])
    if datatype == "BF16":
        return np.array([[1.0, -2.5, 0.0078125], [3.0e10, -1.0e-3, 256.0]], ml_dtypes.bfloat16)
    if datatype in ("FP16", "FP32", "FP64"):
        dtype = DATATYPES[datatype][2]
        info = np.finfo(dtype)
        return np.array([[1.5, -0.25, info.max], [info.min, info.tiny, 3.0e-3]], dtype=dtype)
    info = np.iinfo(DATATYPES[datatype][2])
    return np.array([[info.min, info.max, 0], [1, info.max - 1, 7]], dtype=info.dtype)


def _grpc_inputs(arrays: dict[str, np.ndarray], datatype: str) -> list[triton_grpc.InferInput]:
    inputs = []
    for name, array in arrays.items():
        tensor = triton_grpc.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _http_inputs(arrays: dict[str, np.ndarray], datatype: str) -> list[triton_http.InferInput]:
    inputs = []
    for name, array in arrays.items():
        tensor = triton_http.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    return inputs


def _both(triton, grpc_client, model, arrays, datatype, outputs=(), class_count=0):
    """The same request over HTTP (binary) and gRPC: the two results."""
    http_outputs = [triton_http.InferRequestedOutput(o, class_count=class_count) for o in outputs]
    grpc_outputs = [triton_grpc.InferRequestedOutput(o, class_count=class_count) for o in outputs]
    over_http = triton.infer(
        model, _http_inputs(arrays, datatype), outputs=http_outputs or None, request_id="same"
    )
    over_grpc = grpc_client.infer(
        model, _grpc_inputs(arrays, datatype), outputs=grpc_outputs or None, request_id="same"
    )
    return over_http, over_grpc


def _assert_same(over_http, over_grpc) -> None:
    """Identical outputs: names, datatypes, shapes and bytes."""
    http_outputs = over_http.get_response()["outputs"]
    grpc_outputs = over_grpc.get_response().outputs
    assert [(o["name"], o["datatype"], o["shape"]) for o in http_outputs] == [
        (o.name, o.datatype, list(o.shape)) for o in grpc_outputs
    ]
    for output in http_outputs:
        left, right = over_http.as_numpy(output["name"]), over_grpc.as_numpy(output["name"])
        assert left.dtype == right.dtype and left.shape == right.shape
        assert (
            left.tobytes() == right.tobytes()
            if left.dtype != object
            else (left.tolist() == right.tolist())
        )
    assert over_grpc.get_response().id == "same"


# ----------------------------------------------------------------------------- every datatype


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_identity_every_datatype_same_over_http_and_grpc(triton, grpc_client, datatype):
    data = _sample(datatype)
    over_http, over_grpc = _both(
        triton, grpc_client, identity_model_name(datatype), {"INPUT0": data}, datatype
    )
    _assert_same(over_http, over_grpc)
    out = over_grpc.as_numpy("OUTPUT0")
    assert out.shape == (2, 3)
    if datatype == "BYTES":
        assert out.tolist() == data.tolist()
    else:
        assert out.tobytes() == data.tobytes()


@pytest.mark.parametrize(
    ("model", "datatype", "dtype"),
    [("add_sub_int32", "INT32", np.int32), ("add_sub_fp32", "FP32", np.float32)],
)
def test_add_sub_same_over_http_and_grpc(triton, grpc_client, model, datatype, dtype):
    a = RNG.integers(-1000, 1000, size=(3, 16)).astype(dtype)
    b = RNG.integers(-1000, 1000, size=(3, 16)).astype(dtype)
    over_http, over_grpc = _both(triton, grpc_client, model, {"INPUT0": a, "INPUT1": b}, datatype)
    _assert_same(over_http, over_grpc)
    np.testing.assert_array_equal(over_grpc.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(over_grpc.as_numpy("OUTPUT1"), a - b)


def test_output_subset_version_and_id(grpc_client):
    a = RNG.integers(-9, 9, size=(2, 16)).astype(np.int32)
    b = RNG.integers(-9, 9, size=(2, 16)).astype(np.int32)
    result = grpc_client.infer(
        "add_sub_int32",
        _grpc_inputs({"INPUT0": a, "INPUT1": b}, "INT32"),
        model_version="1",
        outputs=[triton_grpc.InferRequestedOutput("OUTPUT1")],
        request_id="req-7",
    )
    response = result.get_response()
    assert (response.model_name, response.model_version, response.id) == (
        "add_sub_int32",
        "1",
        "req-7",
    )
    assert [o.name for o in response.outputs] == ["OUTPUT1"]
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_no_id_gives_an_empty_id(grpc_client):
    data = _sample("INT32")
    result = grpc_client.infer("identity_int32", _grpc_inputs({"INPUT0": data}, "INT32"))
    assert result.get_response().id == ""


@pytest.mark.parametrize(
    ("model", "arrays", "datatype"),
    [
        ("nobatch", {"INPUT0": np.array([[1, 2, 3], [-4, 0.5, 6.25]], np.float32)}, "FP32"),
        ("autocomplete_fixed", {"X": np.array([[1, 2, 3], [4, 5, 6]], np.float32)}, "FP32"),
        ("autocomplete_batch", {"X": np.arange(12, dtype=np.float32).reshape(3, 4)}, "FP32"),
        ("identity_fp32", {"INPUT0": np.arange(1000, dtype=np.float32).reshape(1, 1000)}, "FP32"),
        ("versioned", {"INPUT0": np.arange(8, dtype=np.int32).reshape(2, 4)}, "INT32"),
    ],
)
def test_other_models_same_over_http_and_grpc(triton, grpc_client, model, arrays, datatype):
    over_http, over_grpc = _both(triton, grpc_client, model, arrays, datatype)
    _assert_same(over_http, over_grpc)


def test_reshape_model_two_inputs_of_different_types(triton, grpc_client):
    data = np.arange(6, dtype=np.float32)
    shape = np.array([3, 2], dtype=np.int64)
    inputs = [
        triton_grpc.InferInput("DATA", [6], "FP32").set_data_from_numpy(data),
        triton_grpc.InferInput("SHAPE", [2], "INT64").set_data_from_numpy(shape),
    ]
    result = grpc_client.infer("reshape_fail", inputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT"), data.reshape(3, 2))


# ----------------------------------------------------------------------------- classification

SCORES = np.array(
    [
        [0.125, 0.5, 0.875, -1.0, 0.25, 0.0625, 2.5, -0.5, 0.75, 0.375],
        [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 10.0],
    ],
    dtype=np.float32,
)


def test_classification_with_labels(triton, grpc_client):
    over_http, over_grpc = _both(
        triton, grpc_client, "classifier", {"LOGITS": SCORES}, "FP32", ["PROBS"], class_count=3
    )
    _assert_same(over_http, over_grpc)
    got = over_grpc.as_numpy("PROBS")
    assert got.shape == (2, 3)
    assert got[0].tolist() == [b"2.500000:6:deer", b"0.875000:2:bird", b"0.750000:8:truck"]
    assert got[1][0] == b"10.000000:9:" + CLASSIFIER_LABELS[9].encode()


def test_classification_without_labels_and_unbatched(triton, grpc_client):
    data = np.array([[1, 6, 3], [4, 5, 2]], np.float32)
    over_http, over_grpc = _both(
        triton, grpc_client, "nobatch", {"INPUT0": data}, "FP32", ["OUTPUT0"], class_count=2
    )
    _assert_same(over_http, over_grpc)
    assert over_grpc.as_numpy("OUTPUT0").tolist() == [b"12.000000:1", b"10.000000:4"]


# ----------------------------------------------------------------------------- raw stub calls


def _raw_request(model: str, *tensors, raw=(), **fields) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model, inputs=list(tensors), raw_input_contents=list(raw), **fields
    )


def _tensor(name: str, datatype: str, shape, **fields):
    return pb.ModelInferRequest.InferInputTensor(
        name=name, datatype=datatype, shape=shape, **fields
    )


_TYPED_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


@pytest.mark.parametrize("datatype", list(_TYPED_FIELD))
def test_typed_contents_for_every_datatype(stub, datatype):
    data = _sample(datatype)
    values = data.ravel().tolist()
    contents = pb.InferTensorContents(**{_TYPED_FIELD[datatype]: values})
    response = stub.ModelInfer(
        _raw_request(
            identity_model_name(datatype), _tensor("INPUT0", datatype, [2, 3], contents=contents)
        )
    )
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("OUTPUT0", datatype, [2, 3])
    (raw,) = response.raw_output_contents  # outputs always come back raw, as from Triton
    expected = serialize_bytes(values) if datatype == "BYTES" else data.tobytes()
    assert raw == expected


def test_bytes_raw_input_uses_the_length_prefix(stub):
    items = [b"first", b"", b"\x00\x01", "\u00fcber".encode()]
    response = stub.ModelInfer(
        _raw_request(
            "identity_bytes", _tensor("INPUT0", "BYTES", [2, 2]), raw=[serialize_bytes(items)]
        )
    )
    assert response.raw_output_contents[0] == serialize_bytes(items)


def test_request_and_output_parameters_are_accepted(stub):
    data = np.ones((1, 4), np.float32)
    request = _raw_request("dyn_batch", _tensor("X", "FP32", [1, 4]), raw=[data.tobytes()])
    request.parameters["priority"].uint64_param = 0
    request.parameters["custom"].string_param = "kept"
    output = request.outputs.add(name="Y")
    output.parameters["binary_data"].bool_param = False  # an HTTP hint: ignored over gRPC
    response = stub.ModelInfer(request)
    assert np.frombuffer(response.raw_output_contents[0], np.float32).tolist() == [0.5] * 4


# ----------------------------------------------------------------------------- sizes, gzip


def test_tensors_over_4_mib_in_both_directions(grpc_client):
    data = RNG.standard_normal((1, 2_000_000)).astype(np.float32)  # 8 MB each way
    result = grpc_client.infer("identity_fp32", _grpc_inputs({"INPUT0": data}, "FP32"))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(grpc_client, algorithm):
    data = np.tile(np.arange(1000, dtype=np.int32), (1, 20))
    result = grpc_client.infer(
        "identity_int32", _grpc_inputs({"INPUT0": data}, "INT32"), compression_algorithm=algorithm
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


# ----------------------------------------------------------------------------- async clients


def test_async_infer_callbacks_get_their_own_results(grpc_client):
    done: queue.Queue = queue.Queue()
    sent = {}
    for i in range(24):
        batch = 1 + i % 3
        data = (np.arange(4 * batch, dtype=np.float32).reshape(batch, 4) + 100 * i) / 4
        sent[f"r{i}"] = data
        grpc_client.async_infer(
            "dyn_batch",
            _grpc_inputs({"X": data}, "FP32"),
            callback=lambda result, error: done.put((result, error)),
            request_id=f"r{i}",
        )
    for _ in range(len(sent)):
        result, error = done.get(timeout=30)
        assert error is None, error
        request_id = result.get_response().id
        np.testing.assert_array_equal(result.as_numpy("Y"), sent.pop(request_id) * 0.5)
    assert not sent


def test_asyncio_client(grpc_server):
    async def run():
        async with triton_grpc_aio.InferenceServerClient(grpc_server.grpc_url) as client:
            assert await client.is_server_live()
            assert await client.is_model_ready("add_sub_fp32")
            metadata = await client.get_model_metadata("add_sub_fp32", as_json=True)
            assert [i["name"] for i in metadata["inputs"]] == ["INPUT0", "INPUT1"]

            async def one(i: int) -> None:
                a = np.full((1, 16), i, np.float32)
                b = np.ones((1, 16), np.float32)
                inputs = _grpc_inputs({"INPUT0": a, "INPUT1": b}, "FP32")
                result = await client.infer("add_sub_fp32", inputs, request_id=str(i))
                assert result.get_response().id == str(i)
                np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)

            await asyncio.gather(*(one(i) for i in range(16)))

    asyncio.run(run())
