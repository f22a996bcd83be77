"""The local model registry: versioned model files and folders under ``TIDAL_HOME``."""

from tidal.registry.model import FRAMEWORKS, ModelVersion, RegistryError, parse_model_id
from tidal.registry.registry import ModelRegistry

__all__ = ["FRAMEWORKS", "ModelRegistry", "ModelVersion", "RegistryError", "parse_model_id"]
