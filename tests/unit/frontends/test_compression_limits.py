"""The decompressed size limit (--http-max-input-size applies after Content-Encoding too)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from tidal.core import ErrorCode, InferenceError
from tidal.frontends.http.compression import decompress_body

BIG = b"\0" * (1 << 20)


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("gzip", gzip.compress(BIG)),
        ("gzip", gzip.compress(BIG[:600_000]) + gzip.compress(BIG[:600_000])),  # two members
        ("deflate", zlib.compress(BIG)),
        ("deflate", zlib.compress(BIG)[2:-4]),  # raw deflate
    ],
)
def test_inflating_past_the_limit_is_refused(encoding, data):
    with pytest.raises(InferenceError) as info:
        decompress_body(data, encoding, max_size=1_000_000)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == (
        "the request body inflates to more than the maximum allowed input size of 1000000 "
        "bytes. Use --http-max-input-size to increase the limit."
    )


def test_at_the_limit_is_fine():
    assert decompress_body(gzip.compress(BIG), "gzip", max_size=len(BIG)) == BIG
    assert decompress_body(zlib.compress(BIG), "deflate", max_size=len(BIG)) == BIG
    assert decompress_body(gzip.compress(BIG), "gzip") == BIG  # no limit given
