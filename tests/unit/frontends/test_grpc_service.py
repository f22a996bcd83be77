"""The gRPC frontend in-process: a real ``grpc.aio`` server on a tiny repository."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tidal.config import ServerSettings
from tidal.core import ErrorCode, InferenceError
from tidal.frontends.grpc import GrpcService
from tidal.frontends.grpc.status import GRPC_STATUS, unary
from tidal.server import InferenceServer

from ..tiny_onnx import write_ident_repository


@pytest.fixture
def repo(tmp_path):
    return write_ident_repository(tmp_path / "repo", 2)


async def _serving(repo, body):
    server = InferenceServer(ServerSettings(), [repo])
    assert await server.start() == []
    service = await GrpcService.start(server, "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            return await body(service_pb2_grpc.GRPCInferenceServiceStub(channel), service)
    finally:
        await service.shutdown(timeout=1)
        await server.stop()


def _infer_request(value: float, request_id: str = "") -> pb.ModelInferRequest:
    data = np.full((1, 2), value, dtype=np.float32)
    return pb.ModelInferRequest(
        model_name="ident",
        id=request_id,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])],
        raw_input_contents=[data.tobytes()],
    )


def test_every_error_code_has_a_grpc_status():
    assert set(GRPC_STATUS) == set(ErrorCode)
    assert GRPC_STATUS[ErrorCode.INVALID_ARG] is grpc.StatusCode.INVALID_ARGUMENT
    assert GRPC_STATUS[ErrorCode.UNSUPPORTED] is grpc.StatusCode.UNIMPLEMENTED


def test_health_inference_and_errors(repo):
    async def body(stub, service):
        assert (await stub.ServerLive(pb.ServerLiveRequest())).live
        assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
        response = await stub.ModelInfer(_infer_request(1.5, "a"))
        assert response.id == "a"
        assert np.frombuffer(response.raw_output_contents[0], np.float32).tolist() == [1.5] * 2
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        assert "nope" in missing.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as shm:
            await stub.SystemSharedMemoryStatus(pb.SystemSharedMemoryStatusRequest())
        assert shm.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert "shared memory" in shm.value.details()

    asyncio.run(_serving(repo, body))


class _Broken(service_pb2_grpc.GRPCInferenceServiceServicer):
    @unary
    async def ServerLive(self, request, context):
        raise RuntimeError("boom")

    @unary
    async def ServerReady(self, request, context):
        raise InferenceError.unavailable("not now")


def test_the_catch_site_turns_failures_into_statuses():
    async def run():
        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_Broken(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as internal:
                    await stub.ServerLive(pb.ServerLiveRequest())
                with pytest.raises(grpc.aio.AioRpcError) as unavailable:
                    await stub.ServerReady(pb.ServerReadyRequest())
        finally:
            await server.stop(0)
        assert internal.value.code() is grpc.StatusCode.INTERNAL
        assert internal.value.details() == "internal error: boom"
        assert unavailable.value.code() is grpc.StatusCode.UNAVAILABLE
        assert unavailable.value.details() == "not now"

    asyncio.run(run())


def test_a_port_in_use_is_an_error(repo):
    async def body(stub, service):
        with pytest.raises(OSError):
            await GrpcService.start(
                InferenceServer(ServerSettings(), [repo]), "127.0.0.1", service.port
            )

    asyncio.run(_serving(repo, body))


def test_shutdown_ends_open_streams_after_answering_them(repo):
    async def body(stub, service):
        call = stub.ModelStreamInfer()
        await call.write(_infer_request(2.0, "s1"))
        first = await call.read()
        assert first.infer_response.id == "s1"
        started = time.monotonic()
        await service.shutdown(timeout=10)  # the idle stream must not hold it for 10 s
        assert time.monotonic() - started < 5
        assert await call.read() is grpc.aio.EOF
        assert await call.code() is grpc.StatusCode.OK

    asyncio.run(_serving(repo, body))
