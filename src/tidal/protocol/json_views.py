"""JSON views of server and model metadata and of the effective model configuration."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from tidal.config.model_config import ModelConfig
from tidal.config.proto import to_proto
from tidal.scheduling.statistics import Duration, ModelStatistics
from tidal.server.metadata import ModelMetadata, ServerMetadata, TensorMetadata

_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def server_metadata_json(metadata: ServerMetadata) -> dict[str, Any]:
    return {
        "name": metadata.name,
        "version": metadata.version,
        "extensions": list(metadata.extensions),
    }


def model_metadata_json(metadata: ModelMetadata) -> dict[str, Any]:
    return {
        "name": metadata.name,
        "versions": list(metadata.versions),
        "platform": metadata.platform,
        "inputs": [_tensor_json(t) for t in metadata.inputs],
        "outputs": [_tensor_json(t) for t in metadata.outputs],
    }


def model_config_json(config: ModelConfig) -> dict[str, Any]:
    """The config as Triton prints it: protobuf field names, every field shown, and 64-bit
    integers as JSON numbers rather than protobuf's strings (clients read ``dims`` as ints)."""
    message = to_proto(config)
    try:
        as_dict = json_format.MessageToDict(
            message,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    except TypeError:  # protobuf < 5.26 spells the option differently
        as_dict = json_format.MessageToDict(
            message, preserving_proto_field_name=True, including_default_value_fields=True
        )
    return _numbers_for_int64(message, as_dict)


def statistics_json(entries: list[tuple[str, int, ModelStatistics]]) -> dict[str, Any]:
    """Triton's statistics extension format, which perf_analyzer parses."""
    return {"model_stats": [_model_stats_json(n, v, s) for n, v, s in entries]}


def _model_stats_json(name: str, version: int, stats: ModelStatistics) -> dict[str, Any]:
    empty = {"count": 0, "ns": 0}
    return {
        "name": name,
        "version": str(version),
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": _duration(stats.success),
            "fail": _duration(stats.fail),
            "queue": _duration(stats.queue),
            "compute_input": _duration(stats.compute_input),
            "compute_infer": _duration(stats.compute_infer),
            "compute_output": _duration(stats.compute_output),
            "cache_hit": empty,
            "cache_miss": empty,
        },
        "response_stats": {},
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": _duration(batch.compute_input),
                "compute_infer": _duration(batch.compute_infer),
                "compute_output": _duration(batch.compute_output),
            }
            for size, batch in sorted(stats.batches.items())
        ],
        "memory_usage": [],
    }


def _duration(duration: Duration) -> dict[str, int]:
    return {"count": duration.count, "ns": duration.ns}


def _tensor_json(tensor: TensorMetadata) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}


def _numbers_for_int64(message: Message, as_dict: dict[str, Any]) -> dict[str, Any]:
    for field in message.DESCRIPTOR.fields:
        if field.name not in as_dict:
            continue
        value = as_dict[field.name]
        if field.message_type is not None:
            if field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                if value_field.message_type is not None:
                    source = getattr(message, field.name)
                    for key in value:
                        # map keys come back as strings in JSON
                        typed_key = _map_key(field, key)
                        value[key] = _numbers_for_int64(source[typed_key], value[key])
                elif value_field.type in _INT64_TYPES:
                    as_dict[field.name] = {k: int(v) for k, v in value.items()}
            elif isinstance(value, list):  # a repeated message field
                items = getattr(message, field.name)
                as_dict[field.name] = [
                    _numbers_for_int64(item, entry)
                    for item, entry in zip(items, value, strict=True)
                ]
            else:
                as_dict[field.name] = _numbers_for_int64(getattr(message, field.name), value)
        elif field.type in _INT64_TYPES:
            as_dict[field.name] = [int(v) for v in value] if isinstance(value, list) else int(value)
    return as_dict


def _map_key(field: FieldDescriptor, key: str) -> Any:
    key_field = field.message_type.fields_by_name["key"]
    return key if key_field.type == FieldDescriptor.TYPE_STRING else int(key)
