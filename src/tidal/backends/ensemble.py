"""The registry entry for ``platform: "ensemble"``.

An ensemble has no model file and no instances: Triton completes nothing in its config, and
the repository loader gives each ensemble version an ``EnsembleScheduler``
(``tidal.scheduling.ensemble``) that runs its steps on other models instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError

__all__ = ["EnsembleBackend"]


class EnsembleBackend:
    """Leaves an ensemble's config as written and refuses to create instances."""

    name = "ensemble"

    def auto_complete(self, config: ModelConfig, version_dir: Path) -> ModelConfig:
        return config

    def create_instance(
        self, config: ModelConfig, version_dir: Path, device: str, version: int
    ) -> NoReturn:
        raise ConfigError(f"ensemble '{config.name}' has no instances; its steps run on models")
