"""Admission for schedulers that run each request as its own task (direct and ensemble)."""

from __future__ import annotations

import asyncio

from tidal.core.errors import InferenceError
from tidal.scheduling.statistics import REJECTED, ModelStatistics


class Admission:
    """Counts a scheduler's accepted requests; once closed it refuses new ones, and ``close``
    returns when the accepted ones have all left."""

    def __init__(self, model_name: str, stats: ModelStatistics) -> None:
        self._model_name = model_name
        self._stats = stats
        self._closed = False
        self._drained = asyncio.Event()
        self._drained.set()
        self.count = 0

    def enter(self) -> None:
        """Accept one request; once closed, record it as rejected and raise UNAVAILABLE."""
        if self._closed:
            self._stats.record_failure(REJECTED, 0)
            raise InferenceError.unavailable(f"model '{self._model_name}' is unloading")
        self.count += 1
        self._drained.clear()

    def leave(self) -> None:
        """One accepted request is done (answered, failed or cancelled)."""
        self.count -= 1
        if self.count == 0:
            self._drained.set()

    async def close(self) -> None:
        """Refuse new requests and wait for the accepted ones to leave."""
        self._closed = True
        await self._drained.wait()
