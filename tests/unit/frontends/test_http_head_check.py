"""``HttpService``'s head-time limits in-process: a handler's ``check_head`` answers before
any body byte is read, the header timeout is not reset by trickled bytes, and the cap."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from tidal.core.reply import Reply, error_reply

from .test_http_transport import ScriptedHandlers, post, raw, run, serving


class KeyedHandlers(ScriptedHandlers):
    """Refuses, from the head, every request without ``x-key: ok``."""

    def __init__(self) -> None:
        super().__init__()
        self.checked: list[tuple[str, str]] = []

    def check_head(self, method: str, path: str, headers: Mapping[str, str]) -> Reply | None:
        self.checked.append((method, path))
        if headers.get("x-key") == "ok":
            return None
        return error_reply(401, "no key")


def test_check_head_refuses_before_the_body_and_closes():
    async def main():
        handlers = KeyedHandlers()
        async with serving(handlers) as service, raw(service) as conn:
            # a declared 1 GiB body, none of it sent: the answer cannot wait for it
            await conn.send(
                b"POST /x?q=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 1073741824\r\n\r\n"
            )
            status, headers, body = await conn.response()
            assert status == 401 and body == b'{"error":"no key"}'
            assert headers["connection"] == "close"
            assert await conn.closed()
        assert handlers.checked == [("POST", "/x")]
        assert handlers.finished == []  # handle() never ran

    run(main)


def test_check_head_lets_a_keyed_request_on():
    async def main():
        handlers = KeyedHandlers()
        async with serving(handlers) as service, raw(service) as conn:
            for _ in range(2):
                await conn.send(post("/echo", b"12345", "X-Key: ok"))
                status, _, _ = await conn.response()
                assert status == 200
        assert handlers.finished == ["/echo", "/echo"]

    run(main)


def test_a_trickled_head_gets_408_after_the_header_timeout():
    async def main():
        handlers = ScriptedHandlers()
        async with serving(handlers, header_timeout=0.3) as service, raw(service) as conn:
            await conn.send(b"GET /x HTTP/1.1\r\n")
            for _ in range(5):  # a byte every 0.1 s: each well within the timeout
                await asyncio.sleep(0.1)
                await conn.send(b"a")
            status, _, body = await conn.response()
            assert status == 408 and b"error" in body
            assert await conn.closed()

    run(main)


def test_connections_over_the_cap_are_closed():
    async def main():
        handlers = ScriptedHandlers()
        async with serving(handlers, max_connections=1) as service, raw(service) as first:
            await first.send(post("/a", b""))
            assert (await first.response())[0] == 200
            async with raw(service) as second:
                assert await second.closed()
            await first.send(post("/b", b""))
            assert (await first.response())[0] == 200

    run(main)
