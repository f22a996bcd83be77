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
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    try:
        return zlib.decompress(body, wbits)
    except zlib.error:
        if encoding == "deflate":  # some clients send raw deflate without the zlib wrapper
            try:
                return zlib.decompress(body, -zlib.MAX_WBITS)
            except zlib.error:
                pass
        raise InferenceError.invalid(f"the request body is not valid {encoding} data") from None


def choose_encoding(accept_encoding: str) -> str | None:
    """The first of gzip/deflate the client accepts (q=0 means refused), or None."""
    for item in accept_encoding.split(","):
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if name in _SUPPORTED and params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00"):
            return name
    return None


def compress_body(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    else:
        compressor = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()
