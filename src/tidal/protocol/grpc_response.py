"""Encoding core results as v2 gRPC messages.

Output tensors always travel in ``raw_output_contents`` (BYTES with the 4-byte length prefix),
as Triton sends them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb

from tidal.config.model_config import ModelConfig
from tidal.config.proto import to_proto
from tidal.core.metadata import ModelMetadata, ServerMetadata, TensorMetadata
from tidal.core.types import InferResponse
from tidal.protocol.json_views import statistics_json
from tidal.protocol.statistics_view import StatisticsView
from tidal.protocol.tensor_bytes import tensor_to_bytes

__all__ = [
    "encode_infer_response",
    "encode_parameters",
    "model_config_response",
    "model_metadata_response",
    "repository_index_response",
    "server_metadata_response",
    "statistics_response",
    "stream_error",
]

_INT64_MAX = 2**63 - 1


class IndexEntry(Protocol):
    """One row of the repository index, as the facade reports it."""

    name: str
    version: str
    state: str
    reason: str


def encode_infer_response(response: InferResponse) -> pb.ModelInferResponse:
    outputs = []
    raw = []
    for output in response.outputs:
        tensor = pb.ModelInferResponse.InferOutputTensor(
            name=output.name, datatype=output.datatype.value, shape=output.shape
        )
        if output.parameters:
            encode_parameters(tensor.parameters, output.parameters)
        outputs.append(tensor)
        raw.append(tensor_to_bytes(output.datatype, output.data))
    message = pb.ModelInferResponse(
        model_name=response.model_name,
        model_version=str(response.model_version),
        id=response.id or "",
        outputs=outputs,
        raw_output_contents=raw,
    )
    if response.parameters:
        encode_parameters(message.parameters, response.parameters)
    return message


def encode_parameters(
    target: MutableMapping[str, pb.InferParameter], parameters: Mapping[str, Any]
) -> None:
    """Fill a ``map<string, InferParameter>``; values without a protobuf type become text."""
    for key, value in parameters.items():
        slot = target[key]
        if isinstance(value, (bool, np.bool_)):
            slot.bool_param = bool(value)
        elif isinstance(value, (int, np.integer)):
            if int(value) > _INT64_MAX:
                slot.uint64_param = int(value)
            else:
                slot.int64_param = int(value)
        elif isinstance(value, (float, np.floating)):
            slot.double_param = float(value)
        elif isinstance(value, bytes):
            slot.string_param = value.decode("utf-8", errors="replace")
        else:
            slot.string_param = str(value)


def stream_error(message: str, request: pb.ModelInferRequest) -> pb.ModelStreamInferResponse:
    """A failed request on a stream: the message, plus the request's id to match it by."""
    return pb.ModelStreamInferResponse(
        error_message=message,
        infer_response=pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        ),
    )


def server_metadata_response(metadata: ServerMetadata) -> pb.ServerMetadataResponse:
    return pb.ServerMetadataResponse(
        name=metadata.name, version=metadata.version, extensions=metadata.extensions
    )


def model_metadata_response(metadata: ModelMetadata) -> pb.ModelMetadataResponse:
    return pb.ModelMetadataResponse(
        name=metadata.name,
        versions=metadata.versions,
        platform=metadata.platform,
        inputs=[_tensor_metadata(t) for t in metadata.inputs],
        outputs=[_tensor_metadata(t) for t in metadata.outputs],
    )


def model_config_response(config: ModelConfig) -> pb.ModelConfigResponse:
    return pb.ModelConfigResponse(config=to_proto(config))


def statistics_response(
    entries: Sequence[tuple[str, int, StatisticsView]],
) -> pb.ModelStatisticsResponse:
    """Built from the JSON view so that both protocols report the very same fields."""
    return json_format.ParseDict(
        statistics_json(entries), pb.ModelStatisticsResponse(), ignore_unknown_fields=True
    )


def repository_index_response(entries: Iterable[IndexEntry]) -> pb.RepositoryIndexResponse:
    return pb.RepositoryIndexResponse(
        models=[
            pb.RepositoryIndexResponse.ModelIndex(
                name=e.name, version=e.version, state=e.state, reason=e.reason
            )
            for e in entries
        ]
    )


def _tensor_metadata(tensor: TensorMetadata) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(
        name=tensor.name, datatype=tensor.datatype, shape=tensor.shape
    )
