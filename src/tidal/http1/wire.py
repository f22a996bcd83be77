"""HTTP/1.1 response bytes: the head of a ``Reply`` and the writes that put it on the wire.

Constant parts are cached per status and content type, so a common response costs one
``%``-format and one write.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus

from tidal.core.reply import Reply

logger = logging.getLogger(__name__)

JOIN_LIMIT = 32 * 1024  # bodies up to this size are copied into one write with the head

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"connection: close\r\n"
_KEEP_ALIVE = b"connection: keep-alive\r\n"

# keep-alive modes of a request
CLOSE_AFTER = 0  # answer, then close
KEEP = 1  # HTTP/1.1 keep-alive, nothing to say
KEEP_10 = 2  # HTTP/1.0 keep-alive: the response must say "connection: keep-alive"

_PREFIXES: dict[int, dict[str, bytes]] = {}  # status -> content type -> head up to the length


def _prefix(status: int, content_type: str) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\ncontent-type: ...\\r\\ncontent-length: ``, cached."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    if "\r" in content_type or "\n" in content_type:
        content_type = "application/octet-stream"
    prefix = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: " % (
        status,
        reason.encode("ascii"),
        content_type.encode("latin-1", "replace"),
    )
    by_type = _PREFIXES.setdefault(status, {})
    if len(by_type) < 64:
        by_type[content_type] = prefix
    return prefix


def header_lines(headers: list[tuple[str, str]]) -> bytes:
    """The response's own headers, encoded at once; lines that would break the head are
    dropped (checked per line only when the whole block has a stray line break)."""
    text = "".join([f"{name}: {value}\r\n" for name, value in headers])
    count = len(headers)
    if text.count("\n") == count and text.count("\r") == count:
        return text.encode("latin-1", "replace")
    return b"".join([_header_line(name, value) for name, value in headers])


def _header_line(name: str, value: str) -> bytes:
    line = f"{name}: {value}\r\n"
    if line.count("\n") != 1 or line.count("\r") != 1:  # no header injection
        logger.error("dropping response header %r: it contains a line break", name)
        return b""
    return line.encode("latin-1", "replace")


def write_reply(transport: asyncio.Transport, reply: Reply, head_only: bool, keep: int) -> None:
    """Write ``reply`` (only its head when ``head_only``) saying what ``keep`` says."""
    body = reply.body
    size = len(body)
    status = reply.status
    by_type = _PREFIXES.get(status)
    prefix = by_type.get(reply.content_type) if by_type is not None else None
    if prefix is None:
        prefix = _prefix(status, reply.content_type)
    if reply.headers or keep != KEEP:
        head = _full_head(prefix, size, reply.headers, keep)
    elif head_only or not size:
        transport.write(b"%b%d\r\n\r\n" % (prefix, size))
        return
    elif size <= JOIN_LIMIT:
        transport.write(b"%b%d\r\n\r\n%b" % (prefix, size, body))
        return
    else:
        head = b"%b%d\r\n\r\n" % (prefix, size)
    if head_only or not size:
        transport.write(head)
    elif size <= JOIN_LIMIT:
        transport.write(head + body)
    else:
        transport.writelines((head, body))


def _full_head(prefix: bytes, size: int, headers: list[tuple[str, str]], keep: int) -> bytes:
    parts = [prefix, b"%d\r\n" % size]
    if headers:
        parts.append(header_lines(headers))
    if keep == CLOSE_AFTER:
        parts.append(_CLOSE)
    elif keep == KEEP_10:
        parts.append(_KEEP_ALIVE)
    parts.append(b"\r\n")
    return b"".join(parts)
