"""The interface between the server facade and a model version's queue."""

from __future__ import annotations

from typing import Protocol

from tidal.core.types import InferRequest, InferResponse


class Scheduler(Protocol):
    """Takes requests for one model version and runs them on its instances."""

    @property
    def inflight(self) -> int:
        """Requests accepted and not yet answered."""
        ...

    async def submit(self, request: InferRequest) -> InferResponse:
        """Run one request; raise ``InferenceError`` when it fails."""
        ...

    async def stop(self) -> None:
        """Refuse new work, finish what was accepted, then close the instances."""
        ...
