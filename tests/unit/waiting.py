"""Condition waits for the unit tests: poll until something holds, fail after a deadline.

A fixed sleep either wastes time or, on a loaded machine, is too short; these return as soon
as the condition holds and say what never happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

TIMEOUT_S = 5.0
_INTERVAL_S = 0.002


async def until(
    condition: Callable[[], object], what: str = "condition", timeout: float = TIMEOUT_S
) -> None:
    """Yield to the event loop until ``condition()`` is true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(_INTERVAL_S)


def wait_until(
    condition: Callable[[], object], what: str = "condition", timeout: float = TIMEOUT_S
) -> None:
    """Block until ``condition()`` is true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(_INTERVAL_S)
