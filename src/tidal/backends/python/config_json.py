"""The model configuration as the JSON dict Triton hands Python models, and back.

``args["model_config"]`` and ``auto_complete_config`` see protobuf field names, every field
(defaults included) and 64-bit integers as JSON numbers, as Triton's Python backend shows them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as pb

from tidal.config.json_view import model_config_json
from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError
from tidal.config.proto import from_proto


def config_to_dict(config: ModelConfig) -> dict[str, Any]:
    """The JSON-ready dict of a configuration (the same view the HTTP config endpoint shows)."""
    return model_config_json(config)


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
