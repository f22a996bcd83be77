"""The method table: ``/inference.GRPCInferenceService/<Rpc>`` -> the servicer's method and
its protobuf (de)serializers, taken from the generated ``service_pb2_grpc`` registration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from tritonclient.grpc import service_pb2_grpc

SERVICE = "inference.GRPCInferenceService"


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC: ``streaming`` is bidirectional (the only streaming kind the service has)."""

    call: Callable[..., Any]
    deserialize: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]
    streaming: bool


class _Collector:
    """Stands in for a server to the generated ``add_..._to_server`` function."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers arrive by name below

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers.update(handlers)


def method_table(servicer: service_pb2_grpc.GRPCInferenceServiceServicer) -> dict[str, Method]:
    """Every unary-unary and stream-stream RPC of ``servicer`` by its HTTP/2 ``:path``."""
    collector = _Collector()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, collector)
    table = {}
    for name, handler in collector.handlers.items():
        if handler.unary_unary is not None:
            call, streaming = handler.unary_unary, False
        elif handler.stream_stream is not None:
            call, streaming = handler.stream_stream, True
        else:  # no such RPC in the service today; answered UNIMPLEMENTED if one appears
            continue
        table[f"/{SERVICE}/{name}"] = Method(
            call, handler.request_deserializer, handler.response_serializer, streaming
        )
    return table
