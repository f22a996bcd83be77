"""The model configuration as Triton shows it in JSON: protobuf field names, every field
(defaults included) and 64-bit integers as JSON numbers rather than protobuf's strings.

The HTTP config endpoint and the Python backend (``args["model_config"]``) both hand it out.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from tidal.config.model_config import ModelConfig
from tidal.config.proto import to_proto

_INT64_TYPES = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def model_config_json(config: ModelConfig) -> dict[str, Any]:
    """The JSON-ready dict of CONFIG (clients read ``dims`` and sizes as ints)."""
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
