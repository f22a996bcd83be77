"""Poll mode: follow the repositories on disk and load, reload and unload to match them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine

from tidal.repository.layout import list_model_folders
from tidal.repository.manager import ModelRepository

logger = logging.getLogger(__name__)


class RepositoryPoller:
    """Every ``interval`` seconds: load added models, reload changed ones (a new or removed
    version folder, an edited config or label file), unload removed ones.

    A reload swaps in the new versions only once they are ready, so requests keep being
    served; a model whose folder fails to load is not tried again until the folder changes.
    """

    def __init__(self, repository: ModelRepository, interval: float) -> None:
        self.repository = repository
        self.interval = interval
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="tidal-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad poll must not end polling
                logger.exception("polling the model repositories failed")

    async def poll_once(self) -> None:
        """Bring the model table in line with the repositories, once."""
        folders, problems = await asyncio.to_thread(list_model_folders, self.repository.paths)
        for problem in problems:
            logger.error("%s", problem)
        unique = {}
        for name, paths in sorted(folders.items()):
            if len(paths) == 1:
                unique[name] = paths[0]
            else:
                logger.error(
                    "failed to poll model '%s': not unique across all model repositories", name
                )
        changes: list[Coroutine[object, object, object]] = [
            self.repository.load(name, folder, only_if_changed=True, retry_failed=False)
            for name, folder in unique.items()
        ]
        # A repository that cannot be listed right now removes nothing: it may be back soon.
        if not problems:
            current = {record.name for record in self.repository.records()}
            changes += [
                self.repository.unload(name, forget=True) for name in sorted(current - set(unique))
            ]
        await asyncio.gather(*changes)
