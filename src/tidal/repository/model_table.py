"""What is loaded: models, their versions, each version's state and reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tidal.config.model_config import ModelConfig
from tidal.core.states import ModelState
from tidal.scheduling.base import Scheduler
from tidal.scheduling.statistics import ModelStatistics


@dataclass
class LoadedVersion:
    """A version ready to serve: its config, its scheduler and its output labels."""

    name: str
    version: int
    config: ModelConfig
    scheduler: Scheduler
    stats: ModelStatistics = field(default_factory=ModelStatistics)
    labels: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class VersionRecord:
    version: int
    state: ModelState
    reason: str = ""
    loaded: LoadedVersion | None = None


@dataclass
class ModelRecord:
    """One model folder: its effective config (when it could be read) and its versions."""

    name: str
    path: Path
    config: ModelConfig | None = None
    state: ModelState = ModelState.UNKNOWN
    reason: str = ""
    versions: dict[int, VersionRecord] = field(default_factory=dict)
    # What the folder looked like when it was loaded; None when a load request replaced the
    # config or the files, so the next plain load reads the folder again.
    fingerprint: str | None = None
    # A temporary folder holding files pushed with the load request, removed with the record.
    override_dir: Path | None = None

    def ready_versions(self) -> list[int]:
        return sorted(v for v, r in self.versions.items() if r.state is ModelState.READY)
