"""Condition waits for the end-to-end tests: poll the server until something holds."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx

TIMEOUT_S = 10.0


def wait_until(
    condition: Callable[[], object], what: str = "condition", timeout: float = TIMEOUT_S
) -> None:
    """Return once ``condition()`` is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def pending_requests(metrics_url: str, model: str) -> int:
    """``nv_inference_pending_request_count`` of ``model`` (all versions): requests its
    scheduler accepted that are not executing yet."""
    text = httpx.get(metrics_url, timeout=5).text
    pattern = (
        rf'^nv_inference_pending_request_count{{[^}}]*model="{re.escape(model)}"[^}}]*}} (\S+)$'
    )
    return sum(int(float(v)) for v in re.findall(pattern, text, re.MULTILINE))
