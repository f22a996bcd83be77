"""Model configuration (frozen), config.pbtxt parsing and server settings."""

from tidal.config.model_config import (
    DynamicBatching,
    InstanceGroup,
    ModelConfig,
    QueuePolicy,
    TensorConfig,
    VersionPolicy,
)
from tidal.config.pbtxt import ConfigError, parse_config_text, read_model_config
from tidal.config.settings import ServerSettings

__all__ = [
    "ConfigError",
    "DynamicBatching",
    "InstanceGroup",
    "ModelConfig",
    "QueuePolicy",
    "ServerSettings",
    "TensorConfig",
    "VersionPolicy",
    "parse_config_text",
    "read_model_config",
]
