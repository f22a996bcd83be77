"""The model configuration as the JSON dict Triton hands Python models, and back.

``args["model_config"]`` and ``auto_complete_config`` see protobuf field names, every field
(defaults included) and 64-bit integers as JSON numbers, as Triton's Python backend shows them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2 as pb

from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError
from tidal.config.proto import from_proto, to_proto

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """The JSON-ready dict of a configuration."""
    message = to_proto(config)
    try:
        as_dict = json_format.MessageToDict(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
    except TypeError:  # protobuf < 5.26 names the option differently
        as_dict = json_format.MessageToDict(
            message, preserving_proto_field_name=True, including_default_value_fields=True
        )
    return _int64_as_numbers(message, as_dict)


def config_from_dict(data: dict[str, Any], model_name: str) -> ModelConfig:
    """Read back a dict ``auto_complete_config`` returned; ``ConfigError`` when it is wrong."""
    message = pb.ModelConfig()
    try:
        json_format.ParseDict(data, message)
        return from_proto(message)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"model '{model_name}': auto_complete_config returned an invalid configuration: {exc}"
        ) from None


def _int64_as_numbers(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    for field in message.DESCRIPTOR.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        if field.message_type is None:
            if field.type in _INT64:
                data[field.name] = (
                    [int(v) for v in value] if isinstance(value, list) else int(value)
                )
            continue
        if field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            source = getattr(message, field.name)
            key_is_text = field.message_type.fields_by_name["key"].type == field.TYPE_STRING
            for key in value:
                if value_field.message_type is not None:
                    typed = key if key_is_text else int(key)
                    value[key] = _int64_as_numbers(source[typed], value[key])
                elif value_field.type in _INT64:
                    value[key] = int(value[key])
        elif isinstance(value, list):
            items = getattr(message, field.name)
            data[field.name] = [
                _int64_as_numbers(item, entry) for item, entry in zip(items, value, strict=True)
            ]
        else:
            data[field.name] = _int64_as_numbers(getattr(message, field.name), value)
    return data
