"""``ModelStreamInfer``: many requests in flight on one stream, each response matched to its
request by id, errors answered on the stream while it stays open."""

from __future__ import annotations

import asyncio
import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
from tritonclient.grpc import service_pb2 as pb

IN_FLIGHT = 16


def _rows(i: int) -> np.ndarray:
    batch = 1 + i % 3
    return (np.arange(4 * batch, dtype=np.float32).reshape(batch, 4) + 10 * i) / 8


def _inputs(data: np.ndarray) -> list[triton_grpc.InferInput]:
    return [triton_grpc.InferInput("X", list(data.shape), "FP32").set_data_from_numpy(data)]


def _executions(client: triton_grpc.InferenceServerClient) -> int:
    return client.get_inference_statistics("dyn_batch").model_stats[0].execution_count


def test_sixteen_in_flight_on_one_stream(grpc_client):
    """All 16 are sent before any answer is read; the batcher sees them together, so they run
    in fewer than 16 executions, and every response carries its own request's result."""
    before = _executions(grpc_client)
    responses: queue.Queue = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        sent = {}
        for i in range(IN_FLIGHT):
            sent[f"s{i}"] = _rows(i)
            grpc_client.async_stream_infer("dyn_batch", _inputs(sent[f"s{i}"]), request_id=f"s{i}")
        for _ in range(IN_FLIGHT):
            result, error = responses.get(timeout=30)
            assert error is None, error
            request_id = result.get_response().id
            np.testing.assert_array_equal(result.as_numpy("Y"), sent.pop(request_id) * 0.5)
        assert not sent
    finally:
        grpc_client.stop_stream()
    assert _executions(grpc_client) - before < IN_FLIGHT


def _request(model: str, request_id: str, data: np.ndarray) -> pb.ModelInferRequest:
    return pb.ModelInferRequest(
        model_name=model,
        id=request_id,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="X", datatype="FP32", shape=data.shape)],
        raw_input_contents=[data.tobytes()],
    )


def test_errors_come_back_on_the_stream_which_stays_open(stub):
    good = np.ones((1, 4), np.float32)
    requests = [
        _request("dyn_batch", "ok-1", good),
        _request("no_such_model", "bad-model", good),
        _request("dyn_batch", "bad-size", np.ones((1, 3), np.float32)),
        _request("dyn_batch", "ok-2", good * 2),
    ]
    requests[2].raw_input_contents[0] = b"123"  # 3 bytes for 3 FP32 values
    answers = {}
    for response in stub.ModelStreamInfer(iter(requests), timeout=30):
        answers[response.infer_response.id] = response
    assert set(answers) == {"ok-1", "bad-model", "bad-size", "ok-2"}
    assert "no_such_model" in answers["bad-model"].error_message
    assert "3 bytes" in answers["bad-size"].error_message
    for request_id, factor in (("ok-1", 0.5), ("ok-2", 1.0)):
        assert answers[request_id].error_message == ""
        raw = answers[request_id].infer_response.raw_output_contents[0]
        assert np.frombuffer(raw, np.float32).tolist() == [factor] * 4


def test_tritonclient_error_callback_then_success(grpc_client):
    responses: queue.Queue = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        bad = np.ones((1, 5), np.float32)
        grpc_client.async_stream_infer("dyn_batch", _inputs(bad), request_id="bad")
        result, error = responses.get(timeout=30)
        assert result is None
        assert "unexpected shape" in error.message()
        grpc_client.async_stream_infer("dyn_batch", _inputs(_rows(2)), request_id="good")
        result, error = responses.get(timeout=30)
        assert error is None
        assert result.get_response().id == "good"
    finally:
        grpc_client.stop_stream()


def test_asyncio_stream(grpc_server):
    async def run() -> None:
        async with triton_grpc_aio.InferenceServerClient(grpc_server.grpc_url) as client:

            async def requests():
                for i in range(IN_FLIGHT):
                    yield {
                        "model_name": "dyn_batch",
                        "inputs": _inputs(_rows(i)),
                        "request_id": str(i),
                    }

            seen = set()
            async for result, error in client.stream_infer(requests()):
                assert error is None, error
                request_id = result.get_response().id
                np.testing.assert_array_equal(result.as_numpy("Y"), _rows(int(request_id)) * 0.5)
                seen.add(request_id)
                if len(seen) == IN_FLIGHT:
                    break
            assert seen == {str(i) for i in range(IN_FLIGHT)}

    asyncio.run(run())


def test_a_client_that_cancels_its_stream_leaves_the_server_serving(stub, grpc_client):
    call = stub.ModelStreamInfer(iter([_request("dyn_batch", f"c{i}", _rows(i)) for i in range(8)]))
    call.cancel()
    with pytest.raises(grpc.RpcError) as cancelled:
        list(call)
    assert cancelled.value.code() is grpc.StatusCode.CANCELLED
    assert grpc_client.is_server_ready()
    result = grpc_client.infer("dyn_batch", _inputs(_rows(1)))
    np.testing.assert_array_equal(result.as_numpy("Y"), _rows(1) * 0.5)


def test_final_response_flag_when_asked(grpc_client):
    responses: queue.Queue = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        for request_id, final in (("plain", False), ("flagged", True)):
            grpc_client.async_stream_infer(
                "dyn_batch",
                _inputs(_rows(0)),
                request_id=request_id,
                enable_empty_final_response=final,
            )
            result, error = responses.get(timeout=30)
            assert error is None, error
            parameters = result.get_response().parameters
            assert ("triton_final_response" in parameters) is final
            if final:
                assert parameters["triton_final_response"].bool_param is True
    finally:
        grpc_client.stop_stream()
