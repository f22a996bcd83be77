import gzip
import zlib

import pytest

from tidal.core import ErrorCode, InferenceError
from tidal.frontends.http.compression import choose_encoding, compress_body, decompress_body

BODY = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[1.0]}]}' * 20


@pytest.mark.parametrize("encoding", ["", "identity", "IDENTITY", "  identity "])
def test_identity_leaves_the_body_alone(encoding):
    assert decompress_body(BODY, encoding) is BODY


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", " gzip "])
def test_gzip_request_body(encoding):
    assert decompress_body(gzip.compress(BODY), encoding) == BODY


def test_deflate_request_body_with_zlib_wrapper():
    assert decompress_body(zlib.compress(BODY), "deflate") == BODY


def test_raw_deflate_request_body():
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw = compressor.compress(BODY) + compressor.flush()
    assert decompress_body(raw, "Deflate") == BODY


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, deflate", "compress"])
def test_unsupported_encoding(encoding):
    with pytest.raises(InferenceError) as info:
        decompress_body(BODY, encoding)
    assert info.value.code is ErrorCode.UNSUPPORTED
    assert info.value.message == f"unsupported Content-Encoding '{encoding}'"


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", zlib.compress(BODY)),  # zlib wrapper is not gzip
        ("gzip", gzip.compress(BODY)[:-10]),  # truncated
        ("deflate", b"\xff\xfe\xfd garbage"),
    ],
)
def test_corrupt_body_is_invalid(encoding, body):
    with pytest.raises(InferenceError) as info:
        decompress_body(body, encoding)
    assert info.value.code is ErrorCode.INVALID_ARG
    assert info.value.message == f"the request body is not valid {encoding} data"


def test_multi_member_gzip_body_is_read_in_full():
    body = gzip.compress(BODY[:100]) + gzip.compress(BODY[100:])
    assert decompress_body(body, "gzip") == BODY


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip", "gzip"),
        ("deflate", "deflate"),
        ("GZip", "gzip"),
        ("gzip, deflate", "gzip"),
        ("deflate, gzip", "deflate"),
        ("br, deflate", "deflate"),
        ("gzip;q=0, deflate", "deflate"),
        ("gzip; q=0, deflate", "deflate"),
        ("gzip;q=0.0,deflate;q=0.5", "deflate"),
        ("gzip;q=0.00, deflate", "deflate"),
        ("gzip;q=0.5", "gzip"),
        ("gzip;q=1", "gzip"),
        (" deflate ;q=0.1", "deflate"),
        ("br", None),
        ("identity", None),
        ("*", None),
        ("", None),
        ("gzip;q=0", None),
        ("gzip;q=0, deflate;q=0", None),
    ],
)
def test_choose_encoding(accept, chosen):
    assert choose_encoding(accept) == chosen


@pytest.mark.parametrize("accept", ["gzip;q=0.000", "gzip;Q=0"])
def test_every_spelling_of_q_zero_refuses(accept):
    assert choose_encoding(accept) is None


def test_gzip_response_body_round_trips():
    compressed = compress_body(BODY, "gzip")
    assert compressed[:2] == b"\x1f\x8b"
    assert gzip.decompress(compressed) == BODY
    assert len(compressed) < len(BODY)


def test_deflate_response_body_has_the_zlib_wrapper():
    compressed = compress_body(BODY, "deflate")
    assert zlib.decompress(compressed) == BODY
    assert decompress_body(compressed, "deflate") == BODY


def test_compress_then_decompress_empty_body():
    for encoding in ("gzip", "deflate"):
        assert decompress_body(compress_body(b"", encoding), encoding) == b""
