"""Triton's model control modes over the model table: what loads at start-up, what the
repository API may do (explicit mode only), and polling for changes on disk (poll mode)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path

from tidal.config.paths import is_model_name
from tidal.config.settings import ServerSettings
from tidal.core.errors import InferenceError
from tidal.repository.layout import list_model_folders
from tidal.repository.manager import ModelRepository, load_failure
from tidal.repository.model_table import ModelRecord
from tidal.repository.overrides import (
    parse_config_override,
    remove_override_files,
    write_override_files,
)
from tidal.repository.poll import RepositoryPoller

logger = logging.getLogger(__name__)

NOT_ALLOWED = "explicit model load / unload is not allowed if polling is enabled"


class ModelControl:
    """Loads and unloads models as the model control mode allows."""

    def __init__(self, repository: ModelRepository, settings: ServerSettings) -> None:
        self.repository = repository
        self.mode = settings.model_control_mode
        self._startup_models = settings.load_model
        self._poll_secs = settings.repository_poll_secs
        self._poller: RepositoryPoller | None = None

    async def start(self) -> list[ModelRecord]:
        """Load the start-up models; return those that failed. Starts polling in poll mode."""
        if self.mode == "explicit":
            wanted = self._startup_models
            names = None if "*" in wanted else list(wanted)
            failed = await self.repository.load_all(names)
        else:
            if self._startup_models:
                logger.warning("--load-model is ignored unless --model-control-mode=explicit")
            failed = await self.repository.load_all()
        if self.mode == "poll":
            self._poller = RepositoryPoller(self.repository, self._poll_secs)
            self._poller.start()
        return failed

    async def stop(self) -> None:
        """Stop polling (a poll in progress finishes first)."""
        if self._poller is not None:
            await self._poller.stop()
            self._poller = None

    async def load(
        self, name: str, *, config: str | None = None, files: Mapping[str, bytes] | None = None
    ) -> None:
        """Load or reload ``name``; raise ``InferenceError`` with Triton's code and message.

        A name that is not one plain path segment (``..``, ``a/b``, NUL, ...) names no model
        and gets a missing model's answer, pushed files or not: it never becomes a path.
        """
        self._check_allowed()
        if not is_model_name(name):
            raise _not_found(name, "model not found in any model repository")
        if files and config is None:
            raise InferenceError.invalid(
                "Load parameter 'config' must be specified for model file override"
            )
        override = parse_config_override(name, config) if config is not None else None
        override_dir = None
        if files:
            override_dir = await asyncio.to_thread(write_override_files, name, files)
            folder = override_dir
        else:
            folder = self._folder_of(name)
        try:
            record = await self.repository.load(
                name,
                folder,
                config=override,
                override_dir=override_dir,
                only_if_changed=override is None,
            )
        except BaseException:
            remove_override_files(override_dir)
            raise
        failure = load_failure(record)
        if failure:
            raise InferenceError.invalid(f"load failed for model '{name}': {failure}")

    async def unload(self, name: str, *, unload_dependents: bool = False) -> None:
        """Unload ``name`` (and with ``unload_dependents`` the ensembles that use it) after
        their accepted requests finish. Unloading a model that is not loaded does nothing."""
        self._check_allowed()
        if not is_model_name(name):  # names no model: nothing is loaded under it
            return
        for dependent in self._dependents(name) if unload_dependents else []:
            await self.repository.unload(dependent)
        await self.repository.unload(name)

    def _check_allowed(self) -> None:
        if self.mode != "explicit":
            raise InferenceError.unavailable(NOT_ALLOWED)

    def _folder_of(self, name: str) -> Path:
        folders, problems = list_model_folders(self.repository.paths)
        found = folders.get(name, [])
        if len(found) == 1:
            return found[0]
        if found:
            raise _not_found(name, f"model '{name}' is not unique across all model repositories")
        for problem in problems:  # they name server paths: the log's, not the client's
            logger.error("%s", problem)
        detail = "model not found in any model repository"
        if problems:
            detail += " (a model repository cannot be listed right now)"
        raise _not_found(name, detail)

    def _dependents(self, name: str) -> list[str]:
        """Loaded ensembles that use ``name``, directly or through other ensembles, the
        outermost first."""
        users: dict[str, set[str]] = {}
        for record in self.repository.records():
            steps = getattr(record.config, "ensemble_steps", ()) if record.config else ()
            for step in steps:
                users.setdefault(step.model_name, set()).add(record.name)
        found: list[str] = []
        pending = [name]
        while pending:
            for user in sorted(users.get(pending.pop(), ())):
                if user not in found and user != name:
                    found.append(user)
                    pending.append(user)
        return found[::-1]


def _not_found(name: str, detail: str) -> InferenceError:
    """Triton's answer to a load of a model it cannot find in the repositories."""
    return InferenceError.internal(
        f"failed to load '{name}', failed to poll from model repository: {detail}"
    )
