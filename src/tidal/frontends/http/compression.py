"""gzip and deflate bodies, as ``Content-Encoding`` and ``Accept-Encoding`` ask."""

from __future__ import annotations

import zlib

from tidal.core.errors import InferenceError

_SUPPORTED = ("gzip", "deflate")


def decompress_body(body: bytes, content_encoding: str, max_size: int | None = None) -> bytes:
    """The request body without its ``Content-Encoding``; 400 for anything unreadable, and
    for a body that inflates past ``max_size`` bytes (found without inflating all of it)."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in _SUPPORTED:
        raise InferenceError.unsupported(f"unsupported Content-Encoding '{content_encoding}'")
    limit = max_size if max_size is not None else -1
    try:
        if encoding == "gzip":
            try:
                return _gunzip_members(body, limit)
            except zlib.error:
                pass
        else:
            for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):  # some clients send raw deflate
                try:
                    return _inflate_exactly(body, wbits, limit)
                except zlib.error:
                    continue
    except _TooLarge:
        raise InferenceError.invalid(
            f"the request body inflates to more than the maximum allowed input size of "
            f"{max_size} bytes. Use --http-max-input-size to increase the limit."
        ) from None
    raise InferenceError.invalid(f"the request body is not valid {encoding} data")


class _TooLarge(Exception):
    """The inflated body passed the size limit."""


def _inflate_exactly(data: bytes, wbits: int, limit: int) -> bytes:
    """One whole deflate stream and nothing after it."""
    inflater = zlib.decompressobj(wbits)
    out = _bounded(inflater, data, limit)
    if not inflater.eof or inflater.unused_data:
        raise zlib.error("truncated stream or trailing data")
    return out


def _gunzip_members(body: bytes, limit: int) -> bytes:
    """Every member of a gzip body (RFC 1952 allows several, one after another)."""
    parts: list[bytes] = []
    rest = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        parts.append(_bounded(inflater, rest, limit - sum(map(len, parts)) if limit >= 0 else -1))
        if not inflater.eof:
            raise zlib.error("truncated gzip member")
        rest = inflater.unused_data
        if not rest:
            return b"".join(parts)


def _bounded(inflater: zlib._Decompress, data: bytes, limit: int) -> bytes:
    """Inflate ``data``, stopping once the output passes ``limit`` bytes (a negative
    ``limit``: no bound)."""
    if limit < 0:
        return inflater.decompress(data)
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit:
        raise _TooLarge
    return out


def choose_encoding(accept_encoding: str) -> str | None:
    """The first of gzip/deflate the client accepts (a q value of zero means refused), or None."""
    for item in accept_encoding.split(","):
        name, *params = item.split(";")
        name = name.strip().lower()
        if name in _SUPPORTED and _quality(params) > 0:
            return name
    return None


def _quality(params: list[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0  # an unreadable weight: do not guess the client wants it
    return 1.0


def compress_body(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    else:
        compressor = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()
