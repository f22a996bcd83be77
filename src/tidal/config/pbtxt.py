"""Reading ``config.pbtxt`` files into Triton's ``ModelConfig`` protobuf."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from tidal.config.model_config import ModelConfig
from tidal.config.proto import from_proto

CONFIG_FILENAME = "config.pbtxt"


class ConfigError(ValueError):
    """A model configuration that cannot be used; the message names file, model and field."""


def parse_config_text(text: str, *, model_name: str, origin: str = CONFIG_FILENAME) -> ModelConfig:
    """Parse protobuf text into a frozen config; ``origin`` names the source in errors."""
    message = pb.ModelConfig()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as exc:
        raise ConfigError(f"model '{model_name}': {origin}: {exc}") from None
    try:
        return from_proto(message)
    except ValueError as exc:
        raise ConfigError(f"model '{model_name}': {origin}: {exc}") from None


def read_model_config(model_dir: Path) -> ModelConfig:
    """Read ``<model_dir>/config.pbtxt``, or return a config holding only the name."""
    path = model_dir / CONFIG_FILENAME
    shown = f"{model_dir.name}/{CONFIG_FILENAME}"  # clients see files from the repository
    if not path.is_file():
        return ModelConfig(name=model_dir.name)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"model '{model_dir.name}': cannot read {shown}: {reason}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"model '{model_dir.name}': cannot read {shown}: {exc}") from None
    config = parse_config_text(text, model_name=model_dir.name, origin=shown)
    if config.name and config.name != model_dir.name:
        raise ConfigError(
            f"model '{model_dir.name}': {shown}: name '{config.name}' does not match "
            f"the model directory '{model_dir.name}'"
        )
    return config
