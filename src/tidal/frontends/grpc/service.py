"""``inference.GRPCInferenceService``: decode, call the facade, encode. No model logic here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from tidal.core.errors import InferenceError
from tidal.frontends.grpc.status import unary
from tidal.frontends.grpc.stream import InferStream
from tidal.protocol.grpc_request import (
    decode_infer_request,
    decode_load_parameters,
    decode_parameters,
    parse_version,
)
from tidal.protocol.grpc_response import (
    encode_infer_response,
    model_config_response,
    model_metadata_response,
    repository_index_response,
    server_metadata_response,
    statistics_response,
)
from tidal.server.facade import InferenceServer

Context: TypeAlias = grpc.aio.ServicerContext


def _unsupported(what: str) -> Callable[..., Awaitable[Any]]:
    """A servicer method that answers UNIMPLEMENTED with ``what`` it is that tidal lacks."""

    @unary
    async def method(self: InferenceServicer, request: Any, context: Context) -> Any:
        raise InferenceError.unsupported(what)

    return method


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Every RPC of Triton's service on one ``InferenceServer``."""

    def __init__(self, server: InferenceServer) -> None:
        self._server = server
        self._streams: set[InferStream] = set()

    def stop_streams(self) -> None:
        """At shutdown: open streams take no new requests and end once answered."""
        for stream in self._streams:
            stream.stop_reading()

    # -- health and metadata -------------------------------------------------------------

    @unary
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> Any:
        return pb.ServerLiveResponse(live=self._server.is_live())

    @unary
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=self._server.is_ready())

    @unary
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> Any:
        version = parse_version(request.name, request.version)
        return pb.ModelReadyResponse(ready=self._server.model_ready(request.name, version))

    @unary
    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> Any:
        return server_metadata_response(self._server.metadata())

    @unary
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> Any:
        version = parse_version(request.name, request.version)
        return model_metadata_response(self._server.model_metadata(request.name, version))

    @unary
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Context) -> Any:
        version = parse_version(request.name, request.version)
        return model_config_response(self._server.model_config(request.name, version))

    @unary
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Context) -> Any:
        version = parse_version(request.name, request.version) if request.name else None
        return statistics_response(self._server.model_statistics(request.name, version))

    # -- inference -----------------------------------------------------------------------

    @unary
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> Any:
        return await self._infer(request)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        stream = InferStream(self._infer)
        self._streams.add(stream)
        try:
            async for response in stream.serve(request_iterator):
                yield response
        finally:
            self._streams.discard(stream)

    async def _infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        response = await self._server.infer(decode_infer_request(request))
        return encode_infer_response(response)

    # -- model repository ----------------------------------------------------------------

    @unary
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Context) -> Any:
        _check_repository_name(request.repository_name)
        index = self._facade("repository_index")
        return repository_index_response(await index(ready_only=request.ready))

    @unary
    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> Any:
        _check_repository_name(request.repository_name)
        load = self._facade("load_model")
        config, files = decode_load_parameters(request.model_name, request.parameters)
        await load(request.model_name, config=config, files=files)
        return pb.RepositoryModelLoadResponse()

    @unary
    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> Any:
        _check_repository_name(request.repository_name)
        unload = self._facade("unload_model")
        parameters = decode_parameters(request.parameters) if request.parameters else {}
        dependents = parameters.get("unload_dependents", False)
        if not isinstance(dependents, bool):
            raise InferenceError.invalid("parameter 'unload_dependents' must be a bool_param")
        await unload(request.model_name, unload_dependents=dependents)
        return pb.RepositoryModelUnloadResponse()

    def _facade(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._server, name, None)
        if method is None:
            raise InferenceError.unsupported(
                f"this tidal build cannot {name.replace('_', ' ')} over gRPC yet"
            )
        return method

    # -- extensions tidal does not offer -------------------------------------------------

    SystemSharedMemoryStatus = _unsupported(
        "system shared memory is not supported by tidal: send tensors in the request"
    )
    SystemSharedMemoryRegister = SystemSharedMemoryStatus
    SystemSharedMemoryUnregister = SystemSharedMemoryStatus
    CudaSharedMemoryStatus = _unsupported(
        "CUDA shared memory is not supported by tidal: send tensors in the request"
    )
    CudaSharedMemoryRegister = CudaSharedMemoryStatus
    CudaSharedMemoryUnregister = CudaSharedMemoryStatus
    TraceSetting = _unsupported("trace settings are not supported by tidal")
    LogSettings = _unsupported(
        "log settings are not supported by tidal: start it with --log-verbose instead"
    )


def _check_repository_name(name: str) -> None:
    if name:
        raise InferenceError.unsupported("'repository_name' specification is not supported")
