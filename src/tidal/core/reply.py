"""``Reply``: one HTTP answer as the handlers build it and the transports write it."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

JSON = "application/json"


@dataclass(slots=True)
class Reply:
    """Status, body, content type and extra headers (lower-case names, as sent)."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


def error_reply(status: int, message: str) -> Reply:
    """The v2 protocol's error shape: ``{"error": message}``."""
    return Reply(status, orjson.dumps({"error": message}))


class RequestGate(Protocol):
    """Decides from its path and headers whether a request may be served (a key check, a
    restricted API): None lets it on, else the ``Reply`` that refuses it."""

    def check(self, path: str, headers: Mapping[str, str]) -> Reply | None: ...


class RequestHandler(Protocol):
    """What an HTTP transport calls for each complete request: the ``Reply``, or a coroutine
    for it when the answer has to wait (an ``async def handle`` returns one each time)."""

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | Coroutine[Any, Any, Reply]: ...
