"""Business Logic Scripting: Python models calling other models of the same server.

A worker's BLS request reaches its instance thread in the server, which hands it to the
server's event loop here. The server connects itself once it starts (``connect``); backends sit
below the server layer, so they receive the server's entry point rather than import it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable

from tidal.core.errors import InferenceError
from tidal.core.types import InferRequest, InferResponse

InferFunction = Callable[[InferRequest], Awaitable[InferResponse]]

_target: tuple[InferFunction, asyncio.AbstractEventLoop] | None = None


def connect(infer: InferFunction, loop: asyncio.AbstractEventLoop) -> None:
    """Route BLS requests to ``infer`` on ``loop`` (the running server's)."""
    global _target
    _target = (infer, loop)


def disconnect(infer: InferFunction) -> None:
    """Stop routing BLS requests to ``infer`` (if it is still the connected one)."""
    global _target
    if _target is not None and _target[0] == infer:
        _target = None


def submit(request: InferRequest, timeout_us: int = 0) -> concurrent.futures.Future:
    """Start ``request`` on the server from any thread; the future gives its response."""
    if _target is None:
        raise InferenceError.unavailable(
            f"BLS request to model '{request.model_name}': no inference server is running"
        )
    infer, loop = _target
    return asyncio.run_coroutine_threadsafe(_run(infer, request, timeout_us), loop)


async def _run(infer: InferFunction, request: InferRequest, timeout_us: int) -> InferResponse:
    if timeout_us <= 0:
        return await infer(request)
    try:
        return await asyncio.wait_for(infer(request), timeout_us / 1e6)
    except asyncio.TimeoutError:
        raise InferenceError.unavailable(
            f"BLS request to model '{request.model_name}' timed out after {timeout_us} us"
        ) from None
