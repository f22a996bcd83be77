"""HTTP/1.1 request parsing: httptools callbacks that turn bytes into request tuples.

``RequestParser`` collects one request at a time and hands each complete one to
``deliver(method, path, headers, body, keep)``. What must be refused (a bad request, an upgrade,
a body over the limit, a head too large, or whatever the handler's ``check_head`` refuses
from the method, path and headers alone) raises ``Refused``, before any body byte is read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Protocol

import httptools

from tidal.core.reply import Reply, error_reply
from tidal.http1.wire import CLOSE_AFTER, KEEP, KEEP_10

logger = logging.getLogger(__name__)

MAX_HEAD_SIZE = 64 * 1024  # request line + headers, beyond the first read

_METHODS: dict[bytes, str] = {
    m.encode(): m for m in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH")
}
_HEADER_NAMES: dict[bytes, str] = {}  # raw header name -> lower-case str, bounded below
_HEADER_NAMES_MAX = 512
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) (\S{1,2048}) HTTP/1\.[01]\r?\n")

Deliver = Callable[[str, str, dict[str, str], bytes, int], None]
TooLarge = Callable[[int, "int | None"], Reply]  # (limit, declared size or None) -> the answer


class HeadCheck(Protocol):
    """A handler's check of a request from its head alone, before the body is read (a key, a
    declared size): the ``Reply`` to refuse it with, or None to read the body and serve it."""

    def __call__(self, method: str, path: str, headers: Mapping[str, str]) -> Reply | None: ...


class Refused(Exception):
    """Raised in a parser callback to stop parsing and answer ``reply``, then close."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


def too_big(limit: int, size: int | None = None) -> Reply:
    """Triton's answer to a body over --http-max-input-size: 400, naming the flag."""
    what = f"request body of {size} bytes" if size is not None else "request body"
    return error_reply(
        400,
        f"{what} exceeds the maximum allowed input size of {limit} bytes. "
        "Use --http-max-input-size to increase the limit.",
    )


class RequestParser:
    """One connection's parser state; ``feed`` it bytes, get requests through ``deliver``."""

    __slots__ = (
        "_body",
        "_body_size",
        "_check_head",
        "_deliver",
        "_headers",
        "_max_body",
        "_method",
        "_parser",
        "_path",
        "_query_header",
        "_too_large",
        "_url",
        "head_size",
        "head_ticks",
        "in_head",
        "in_message",
        "keep",
        "on_continue",
    )

    def __init__(
        self,
        deliver: Deliver,
        on_continue: Callable[[], None],
        *,
        max_body: int,
        too_large: TooLarge = too_big,
        check_head: HeadCheck | None = None,
        query_header: str | None = None,
    ) -> None:
        self._deliver = deliver
        self.on_continue = on_continue  # asked for 100 Continue
        self._max_body = max_body
        self._too_large = too_large
        self._check_head = check_head
        self._query_header = query_header  # the query string goes among the headers so named
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._method = ""
        self._path = ""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] | None = None
        self._body_size = 0
        self.keep = KEEP
        self.in_head = False  # from a request's first byte until its headers are complete
        self.in_message = False
        self.head_size = 0
        self.head_ticks = 0  # service ticks seen while in the head (the header timeout)

    @property
    def feed(self) -> Callable[[bytes], None]:
        """httptools' own ``feed_data``: the connection calls it with each read, bounding
        the head with ``check_head_size`` around it (one Python call less per read); its
        errors and ``Refused`` propagate (see ``refusal``)."""
        return self._parser.feed_data

    def check_head_size(self) -> None:
        """Refuse a head that grows past ``MAX_HEAD_SIZE`` over several reads."""
        if self.head_size > MAX_HEAD_SIZE:
            raise Refused(
                error_reply(431, f"the request head is larger than {MAX_HEAD_SIZE} bytes")
            )

    def release(self) -> None:
        """Break the cycles (httptools calls back into this object, this object into its
        connection) and drop the body: a closed connection's last request must not wait for
        a full collection to be freed."""
        self._parser = None  # type: ignore[assignment]
        self._body = None
        self._deliver = _dropped
        self.on_continue = _nothing

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = None
        self._body_size = 0
        self.in_head = True
        self.in_message = True
        self.head_size = 0
        self.head_ticks = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = _HEADER_NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(_HEADER_NAMES) < _HEADER_NAMES_MAX:
                _HEADER_NAMES[name] = key
        headers = self._headers
        if key in headers:  # a repeated header: its values as one comma-separated list
            headers[key] = headers[key] + ", " + value.decode("latin-1")
        else:
            headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self._parser
        raw = parser.get_method()
        method = _METHODS.get(raw) or raw.decode("latin-1")
        self._method = method
        headers = self._headers
        if not parser.should_keep_alive():
            self.keep = CLOSE_AFTER
        elif "connection" in headers and parser.get_http_version() == "1.0":
            self.keep = KEEP_10
        else:
            self.keep = KEEP
        if ("upgrade" in headers or method == "CONNECT") and parser.should_upgrade():
            raise Refused(error_reply(400, "protocol upgrades are not supported"))
        self._path = self._target()
        if self._check_head is not None:
            refusal = self._check_head(method, self._path, headers)
            if refusal is not None:
                raise Refused(refusal)
        length = headers.get("content-length")
        if length is not None and _size(length) > self._max_body:
            raise Refused(self._too_large(self._max_body, int(length)))
        expect = headers.get("expect")
        if (
            expect is not None
            and expect.lower() == "100-continue"
            and parser.get_http_version() != "1.0"
        ):
            self.on_continue()

    def _target(self) -> str:
        """The path of the request target; the query string, when asked for, as a header."""
        url = self._url
        if url[:1] != b"/":
            return _other_path(url)
        query = url.find(b"?")
        if query < 0:
            return url.decode("latin-1")
        if self._query_header is not None:
            self._headers[self._query_header] = url[query + 1 :].decode("latin-1")
        return url[:query].decode("latin-1")

    def on_body(self, chunk: bytes) -> None:
        size = self._body_size + len(chunk)
        if size > self._max_body:
            raise Refused(self._too_large(self._max_body, None))
        self._body_size = size
        body = self._body
        if body is None:
            self._body = [chunk]
        else:
            body.append(chunk)

    def on_message_complete(self) -> None:
        self.in_message = False
        body = self._body
        if body is None:
            data = b""
        elif len(body) == 1:
            data = body[0]
        else:
            data = b"".join(body)
        self._body = None  # an idle keep-alive connection holds no request body
        self._deliver(self._method, self._path, self._headers, data, self.keep)


def _dropped(method: str, path: str, headers: dict[str, str], body: bytes, keep: int) -> None:
    """Where requests go once the connection is gone."""


def _nothing() -> None:
    pass


def refusal(exc: Exception, data: bytes, allowed: Callable[[str], str | None] | None) -> Reply:
    """The answer to a request ``feed`` could not take: what a callback refused, or 400/405."""
    if isinstance(exc, httptools.HttpParserCallbackError):
        reason = exc.__context__
        if isinstance(reason, Refused):
            return reason.reply
        return _internal(reason or exc)
    if isinstance(exc, httptools.HttpParserUpgrade):
        return error_reply(400, "protocol upgrades are not supported")
    if isinstance(exc, httptools.HttpParserInvalidMethodError):
        return _unknown_method(data, allowed) or error_reply(400, f"malformed HTTP request: {exc}")
    if isinstance(exc, httptools.HttpParserError):
        return error_reply(400, f"malformed HTTP request: {exc}")
    if isinstance(exc, Refused):
        return exc.reply
    return _internal(exc)


def _size(length: str) -> int:
    try:
        return int(length)
    except ValueError:
        return 0  # llhttp has already refused a malformed length


def _internal(exc: BaseException) -> Reply:
    logger.error("error parsing an HTTP request", exc_info=exc)
    return error_reply(500, "internal error parsing the request")


def _unknown_method(data: bytes, allowed: Callable[[str], str | None] | None) -> Reply | None:
    """405 for a method token the parser does not know (as Triton answers), when the request
    line is in ``data``; Allow names what the target serves, when the handler can tell."""
    match = _REQUEST_LINE.search(data)
    if match is None or match.group(1) in _METHODS:
        return None
    method = match.group(1).decode("latin-1")
    target = match.group(2)
    path = target.split(b"?", 1)[0].decode("latin-1") if target[:1] == b"/" else _other_path(target)
    allow = allowed(path) if allowed is not None else None
    reply = error_reply(405, f"method {method} is not allowed on {path}")
    if allow:
        reply.headers.append(("allow", allow))
    return reply


def _other_path(url: bytes) -> str:
    """The path of an absolute-form (``http://host/path``) or ``*`` request target."""
    if url == b"*":
        return "*"
    try:
        path = httptools.parse_url(url).path
    except httptools.HttpParserInvalidURLError:
        return url.decode("latin-1")  # no endpoint has such a path: a 404
    return path.decode("latin-1") if path else "/"
