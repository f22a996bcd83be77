"""The model table of a running server: load at start, resolve per request, unload at stop."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from tidal.core.errors import InferenceError
from tidal.core.states import ModelState
from tidal.repository.layout import scan_repositories
from tidal.repository.loader import load_model
from tidal.repository.model_table import LoadedVersion, ModelRecord


class ModelRepository:
    """Every model found in the repositories, with its versions' states."""

    def __init__(self, paths: Sequence[Path], *, auto_complete: bool) -> None:
        self.paths = list(paths)
        self.auto_complete = auto_complete
        self._models: dict[str, ModelRecord] = {}

    async def load_all(self) -> list[ModelRecord]:
        """Load every model in the repositories; return the records of those that failed."""
        folders = scan_repositories(self.paths)
        records = await asyncio.gather(
            *(load_model(n, p, auto_complete=self.auto_complete) for n, p in folders.items())
        )
        self._models = {record.name: record for record in records}
        return [r for r in records if r.state is not ModelState.READY]

    def records(self) -> list[ModelRecord]:
        return [self._models[name] for name in sorted(self._models)]

    def record(self, name: str) -> ModelRecord:
        """The record of a model; NOT_FOUND when no such model exists."""
        record = self._models.get(name)
        if record is None:
            raise InferenceError.not_found(f"Request for unknown model: '{name}' is not found")
        return record

    def resolve(self, name: str, version: int | None = None) -> LoadedVersion:
        """The ready version asked for, or the highest ready one when ``version`` is None."""
        record = self.record(name)
        if version is None:
            ready = record.ready_versions()
            if not ready:
                reason = f": {record.reason}" if record.reason else ""
                raise InferenceError.unavailable(
                    f"Request for unknown model: '{name}' has no available versions{reason}"
                )
            version = ready[-1]
        entry = record.versions.get(version)
        if entry is None:
            raise InferenceError.not_found(
                f"Request for unknown model: '{name}' version {version} is not found"
            )
        if entry.loaded is None or entry.state is not ModelState.READY:
            reason = f": {entry.reason}" if entry.reason else ""
            raise InferenceError.unavailable(
                f"Request for unknown model: '{name}' version {version} is not at ready "
                f"state{reason}"
            )
        return entry.loaded

    def is_ready(self, name: str, version: int | None = None) -> bool:
        try:
            self.resolve(name, version)
        except InferenceError:
            return False
        return True

    def all_ready(self) -> bool:
        return all(record.state is ModelState.READY for record in self._models.values())

    async def unload_all(self) -> None:
        """Drain and close every loaded version."""
        stops = [
            entry.loaded.scheduler.stop()
            for record in self._models.values()
            for entry in record.versions.values()
            if entry.loaded is not None
        ]
        await asyncio.gather(*stops)
        for record in self._models.values():
            for entry in record.versions.values():
                entry.state, entry.loaded = ModelState.UNAVAILABLE, None
            record.state = ModelState.UNAVAILABLE
