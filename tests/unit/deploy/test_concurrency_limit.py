"""maxConcurrentRequestsPerContainer: each /score worker takes its share; excess gets 503."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from tidal.scoring.entry import load_entry_script
from tidal.scoring.routes import ScoringHandlers
from tidal.scoring.settings import ScoreSettings

SCRIPT = """
import asyncio

def init():
    pass

async def run(data):
    await asyncio.sleep(0.3)
    return {"echo": data}
"""


def _handlers(tmp_path: Path, limit: int, workers: int) -> ScoringHandlers:
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)
    settings = ScoreSettings(
        entry_script=str(script), worker_count=workers, max_concurrent_requests=limit
    )
    # inference_schema keeps schemas by module and function name ("score.run") in a process-wide
    # registry, so a schema-decorated script loaded by an earlier test would leak in: not ours.
    entry = dataclasses.replace(load_entry_script(str(script)), schema=None)
    return ScoringHandlers(entry, settings)


async def _burst(handlers: ScoringHandlers, count: int) -> list[int]:
    calls = [handlers.handle("POST", "/score", {}, b'"x"') for _ in range(count)]
    return sorted(reply.status for reply in await asyncio.gather(*calls))


def test_excess_requests_get_503_with_a_clear_body(tmp_path: Path) -> None:
    handlers = _handlers(tmp_path, limit=4, workers=2)  # 2 per worker
    try:
        statuses = asyncio.run(_burst(handlers, 3))
        assert statuses == [200, 200, 503]
        reply = asyncio.run(_one_over(handlers))
        assert reply.status == 503
        message = json.loads(reply.body)["message"]
        assert "maxConcurrentRequestsPerContainer" in message and "4" in message
        # the slots come back once the requests are answered
        assert asyncio.run(_burst(handlers, 2)) == [200, 200]
    finally:
        handlers.close()


async def _one_over(handlers: ScoringHandlers):
    first = [asyncio.ensure_future(handlers.handle("POST", "/score", {}, b"1")) for _ in range(2)]
    await asyncio.sleep(0.05)
    reply = await handlers.handle("POST", "/score", {}, b"1")
    await asyncio.gather(*first)
    return reply


def test_no_limit_by_default(tmp_path: Path) -> None:
    handlers = _handlers(tmp_path, limit=0, workers=1)
    try:
        assert asyncio.run(_burst(handlers, 5)) == [200] * 5
    finally:
        handlers.close()
