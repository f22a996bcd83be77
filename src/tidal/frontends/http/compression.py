"""gzip and deflate bodies, as ``Content-Encoding`` and ``Accept-Encoding`` ask."""

from __future__ import annotations

import zlib

from tidal.core.errors import InferenceError

_SUPPORTED = ("gzip", "deflate")


def decompress_body(body: bytes, content_encoding: str) -> bytes:
    """The request body without its ``Content-Encoding``; 400 for anything unreadable."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in _SUPPORTED:
        raise InferenceError.unsupported(f"unsupported Content-Encoding '{content_encoding}'")
    if encoding == "gzip":
        try:
            return _gunzip_members(body)
        except zlib.error:
            pass
    else:
        for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):  # some clients send raw deflate
            try:
                return _inflate_exactly(body, wbits)
            except zlib.error:
                continue
    raise InferenceError.invalid(f"the request body is not valid {encoding} data")


def _inflate_exactly(data: bytes, wbits: int) -> bytes:
    """One whole deflate stream and nothing after it."""
    inflater = zlib.decompressobj(wbits)
    out = inflater.decompress(data)
    if not inflater.eof or inflater.unused_data:
        raise zlib.error("truncated stream or trailing data")
    return out


def _gunzip_members(body: bytes) -> bytes:
    """Every member of a gzip body (RFC 1952 allows several, one after another)."""
    parts: list[bytes] = []
    rest = body
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        parts.append(inflater.decompress(rest))
        if not inflater.eof:
            raise zlib.error("truncated gzip member")
        rest = inflater.unused_data
        if not rest:
            return b"".join(parts)


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
