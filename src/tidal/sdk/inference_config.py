"""``InferenceConfig``: the entry script, its source folder and its environment."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environment import Environment

if TYPE_CHECKING:
    from tidal.deploy.specs import InferenceSpec

__all__ = ["InferenceConfig"]


class InferenceConfig:
    """How a service scores: ``entry_script`` (relative to ``source_directory``) and its
    ``environment``. Azure's ``runtime``/``conda_file`` form is accepted too: ``conda_file``
    (relative to ``source_directory``) becomes the environment's pip packages. Docker and GPU
    image arguments have no local meaning and are refused rather than silently dropped.
    """

    def __init__(
        self,
        entry_script: str | None = None,
        runtime: str | None = None,
        conda_file: str | os.PathLike[str] | None = None,
        extra_docker_file_steps: str | None = None,
        source_directory: str | os.PathLike[str] | None = None,
        enable_gpu: bool | None = None,
        description: str | None = None,
        base_image: str | None = None,
        base_image_registry: Any = None,
        cuda_version: str | None = None,
        environment: Environment | None = None,
    ) -> None:
        if not entry_script:
            raise ValueError("InferenceConfig: entry_script is required")
        if environment is not None and (runtime or conda_file):
            raise ValueError(
                "InferenceConfig: give either environment or runtime/conda_file, not both"
            )
        if runtime is not None and str(runtime).lower() != "python":
            raise ValueError(f"InferenceConfig: runtime {runtime!r} is not supported (python)")
        docker_only = {
            "extra_docker_file_steps": extra_docker_file_steps,
            "base_image": base_image,
            "base_image_registry": base_image_registry,
            "cuda_version": cuda_version,
        }
        given = [name for name, value in docker_only.items() if value is not None]
        if given:
            raise ValueError(
                f"InferenceConfig: {', '.join(given)} describe a Docker image; local services "
                "run as processes (put packages in environment instead)"
            )
        self.entry_script = str(entry_script)
        # Resolved now, as Azure does: later cwd changes must not move the source folder.
        self.source_directory = (
            str(Path(source_directory).expanduser().resolve()) if source_directory else None
        )
        self.description = description
        self.enable_gpu = enable_gpu
        if conda_file is not None:
            base = Path(self.source_directory or ".")
            environment = Environment.from_conda_specification("conda_file", base / conda_file)
        self.environment = environment

    def to_spec(self) -> InferenceSpec:
        """The deployment layer's ``InferenceSpec``, checked as an inference config file is
        (the entry script must exist); ``SpecError`` names the field otherwise.
        """
        from tidal.deploy.specs import inference_spec_from_json

        fields = {"entryScript": self.entry_script, "sourceDirectory": self.source_directory}
        spec = inference_spec_from_json({k: v for k, v in fields.items() if v is not None})
        if self.environment is None:
            return spec
        return dataclasses.replace(spec, environment=self.environment.to_spec())

    def __repr__(self) -> str:
        return (
            f"InferenceConfig(entry_script={self.entry_script!r}, "
            f"source_directory={self.source_directory!r}, environment={self.environment!r})"
        )
