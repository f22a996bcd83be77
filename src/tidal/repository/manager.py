"""The model table of a running server: load, reload, unload, and resolve per request.

Every change to one model runs under that model's lock. A reload builds the new record next
to the old one and swaps it in only once every version is loaded and warmed up; the old
versions then drain their accepted requests and close in the background. A reload that fails
leaves the old record serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from tidal.config.ensemble import ensemble_load_order
from tidal.config.model_config import ModelConfig
from tidal.core.errors import InferenceError
from tidal.core.states import ModelState
from tidal.core.types import InferRequest, InferResponse
from tidal.repository.fingerprint import folder_fingerprint
from tidal.repository.layout import scan_repositories
from tidal.repository.loader import load_model
from tidal.repository.model_table import LoadedVersion, ModelRecord
from tidal.repository.overrides import remove_override_files
from tidal.scheduling.ensemble import StepRunner

logger = logging.getLogger(__name__)

UNLOADED = "unloaded"  # Triton's reason for a version unloaded on purpose


class ModelRepository:
    """Every model found in the repositories, with its versions' states."""

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        auto_complete: bool,
        step_runner: StepRunner | None = None,
        allow_symlinks_out: bool = False,
    ) -> None:
        self.paths = list(paths)
        self.auto_complete = auto_complete
        # Whether symbolic links in a model's folder may point outside it (the operator's flag).
        self.allow_symlinks_out = allow_symlinks_out
        # How ensembles run their steps; the facade passes one that checks each step request.
        self.run_step: StepRunner = step_runner or self._submit_step
        self._models: dict[str, ModelRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task] = set()
        self._failed: dict[str, str] = {}  # model -> fingerprint of its last failed load

    # -- loading and unloading -----------------------------------------------------------

    async def load_all(self, names: Sequence[str] | None = None) -> list[ModelRecord]:
        """Load every model in the repositories (or those named); return the records of the
        models that failed, including a record for a named model that does not exist."""
        folders = scan_repositories(self.paths)
        missing = []
        if names is not None:
            missing = [n for n in names if n not in folders]
            folders = {n: p for n, p in folders.items() if n in names}
        plain, ensembles = ensemble_load_order(folders)
        records = list(await asyncio.gather(*(self.load(n, folders[n]) for n in plain)))
        for name in ensembles:  # after the models their steps use
            records.append(await self.load(name, folders[name]))
        failed = [r for r in records if not _fully_ready(r)]
        for name in missing:
            reason = f"failed to load '{name}': model not found in any model repository"
            failed.append(
                ModelRecord(name, Path(name), state=ModelState.UNAVAILABLE, reason=reason)
            )
        return failed

    async def load(
        self,
        name: str,
        folder: Path,
        *,
        config: ModelConfig | None = None,
        override_dir: Path | None = None,
        only_if_changed: bool = False,
        retry_failed: bool = True,
    ) -> ModelRecord:
        """Load or reload ``name`` from ``folder``; return the new record (check it with
        :func:`load_failure`), or the current one when nothing had to be done.

        With ``only_if_changed``, a model loaded from an unchanged folder is left alone
        (Triton's poll and load semantics); without ``retry_failed`` (polling) that holds for
        a folder whose last load failed too. When the new record is not fully ready, the old
        one keeps serving if it had a ready version; otherwise the failed record replaces it
        so its reason shows.
        """
        async with self._lock(name):
            old = self._models.get(name)
            fingerprint = None
            if override_dir is None and config is None:
                fingerprint = await asyncio.to_thread(folder_fingerprint, folder)
            if (
                only_if_changed
                and old is not None
                and self._unchanged(old, fingerprint, retry_failed)
            ):
                return old
            serving = old is not None and bool(old.ready_versions())
            if not serving:  # nothing to keep serving: show the load in progress
                self._models[name] = ModelRecord(name, folder, state=ModelState.LOADING)
            try:
                record = await load_model(
                    name,
                    folder,
                    auto_complete=self.auto_complete,
                    config=config,
                    repository=self,
                    allow_symlinks_out=self.allow_symlinks_out,
                )
            except BaseException:
                remove_override_files(override_dir)
                if not serving:
                    self._restore(name, old)
                raise
            record.fingerprint = fingerprint
            record.override_dir = override_dir
            await self._install(record, old, serving)
            return record

    def _unchanged(self, old: ModelRecord, fingerprint: str | None, retry_failed: bool) -> bool:
        """Whether a load of an unchanged folder has nothing to do (Triton's semantics)."""
        if fingerprint is None:
            return False
        if old.fingerprint == fingerprint and (_fully_ready(old) or not retry_failed):
            return True
        return not retry_failed and self._failed.get(old.name) == fingerprint

    async def _install(self, record: ModelRecord, old: ModelRecord | None, serving: bool) -> None:
        """Swap a newly loaded record in, or keep the old one serving when it failed."""
        name = record.name
        self._failed.pop(name, None)
        if not _fully_ready(record) and record.fingerprint is not None:
            self._failed[name] = record.fingerprint
        if _fully_ready(record) or not serving:
            self._models[name] = record
            if old is not None:
                self._retire(old)
            logger.info("model '%s' %s", name, _describe(record))
        else:  # keep the old versions serving; drop what the failed reload built
            await _close(record)
            logger.error(
                "model '%s': reload failed, the loaded versions keep serving: %s",
                name,
                load_failure(record),
            )

    async def unload(self, name: str, *, forget: bool = False) -> None:
        """Refuse new requests for ``name``, finish the accepted ones, close its versions.

        The record stays in the table as UNAVAILABLE "unloaded" (Triton's index shows it),
        unless ``forget`` (the folder is gone). Unloading an unknown model does nothing.
        """
        async with self._lock(name):
            record = self._models.get(name)
            if record is None:
                return
            record.state = ModelState.UNLOADING
            for entry in record.versions.values():
                if entry.loaded is not None:
                    entry.state = ModelState.UNLOADING
            await _close(record)
            for entry in record.versions.values():
                entry.state, entry.reason = ModelState.UNAVAILABLE, UNLOADED
            record.state, record.reason = ModelState.UNAVAILABLE, UNLOADED
            record.fingerprint = None
            if forget:
                del self._models[name]
            logger.info("model '%s' unloaded", name)

    async def unload_all(self) -> None:
        """Drain and close every loaded version, including those retired by a reload."""
        names = list(self._models)
        # Ensembles first: the requests they are finishing still need their steps' models.
        ensembles = [n for n in names if (c := self._models[n].config) and c.is_ensemble]
        await asyncio.gather(*(self.unload(name) for name in ensembles))
        await asyncio.gather(*(self.unload(name) for name in names if name not in ensembles))
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    # -- reading the table ---------------------------------------------------------------

    def records(self) -> list[ModelRecord]:
        return [self._models[name] for name in sorted(self._models)]

    def get(self, name: str) -> ModelRecord | None:
        return self._models.get(name)

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
        """Triton's strict readiness: every version is READY or was unloaded on purpose."""
        for record in self._models.values():
            if record.state is ModelState.LOADING:
                return False
            if not record.versions and record.reason != UNLOADED:
                return False
            for entry in record.versions.values():
                if entry.state is not ModelState.READY and entry.reason != UNLOADED:
                    return False
        return True

    # -- helpers -------------------------------------------------------------------------

    async def _submit_step(self, request: InferRequest) -> InferResponse:
        return await self.resolve(request.model_name, request.model_version).scheduler.submit(
            request
        )

    def _lock(self, name: str) -> asyncio.Lock:
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        return lock

    def _restore(self, name: str, old: ModelRecord | None) -> None:
        if old is None:
            self._models.pop(name, None)
        else:
            self._models[name] = old

    def _retire(self, old: ModelRecord) -> None:
        """Drain and close a replaced record's versions without holding up the swap."""
        task = asyncio.get_running_loop().create_task(_close(old), name=f"retire-{old.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


def load_failure(record: ModelRecord) -> str:
    """Why a load did not make every selected version ready, in Triton's words; "" if it did."""
    if _fully_ready(record):
        return ""
    failed = [
        f"version {v} is at {r.state.value} state: {r.reason};"
        for v, r in sorted(record.versions.items())
        if r.state is not ModelState.READY
    ]
    return " ".join(failed) or record.reason or f"model '{record.name}' is {record.state.value}"


def _fully_ready(record: ModelRecord) -> bool:
    return (
        record.state is ModelState.READY
        and bool(record.versions)
        and all(r.state is ModelState.READY for r in record.versions.values())
    )


async def _close(record: ModelRecord) -> None:
    """Stop every loaded version of ``record`` (each drains first), then drop its files."""
    loaded = [(v, r.loaded) for v, r in record.versions.items() if r.loaded is not None]
    results = await asyncio.gather(
        *(entry.scheduler.stop() for _, entry in loaded), return_exceptions=True
    )
    for (version, _), result in zip(loaded, results, strict=True):
        record.versions[version].loaded = None
        if isinstance(result, BaseException):
            logger.error(
                "model '%s' version %d did not close cleanly: %s", record.name, version, result
            )
    remove_override_files(record.override_dir)


def _describe(record: ModelRecord) -> str:
    if not record.versions:
        return f"is {record.state.value}: {record.reason}"
    return ", ".join(f"version {v} {r.state.value}" for v, r in sorted(record.versions.items()))
