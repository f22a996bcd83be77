"""Repository extension bodies and the JSON nesting limit."""

from __future__ import annotations

import base64

import pytest

from tidal.core import ErrorCode, InferenceError
from tidal.core.metadata import RepositoryEntry
from tidal.protocol.json_limits import MAX_JSON_NESTING_DEPTH, check_json_depth
from tidal.protocol.repository_json import (
    LoadRequest,
    decode_index_request,
    decode_load_request,
    decode_unload_request,
    repository_index_json,
)


def invalid(call, *args) -> str:
    with pytest.raises(InferenceError) as info:
        call(*args)
    assert info.value.code is ErrorCode.INVALID_ARG
    return info.value.message


def test_index_request():
    assert decode_index_request(b"") is False
    assert decode_index_request(b"  \n") is False
    assert decode_index_request(b"{}") is False
    assert decode_index_request(b'{"ready": true}') is True
    assert decode_index_request(b'{"ready": false}') is False
    assert "expected a boolean" in invalid(decode_index_request, b'{"ready": 1}')
    assert "failed to parse" in invalid(decode_index_request, b"{")
    assert "must be a JSON object" in invalid(decode_index_request, b'"ready"')


def test_load_request():
    assert decode_load_request(b"") == LoadRequest()
    content = bytes(range(256))
    body = (
        b'{"parameters": {"config": "{\\"max_batch_size\\": 2}", "file:1/model.onnx": "'
        + base64.b64encode(content)
        + b'"}}'
    )
    assert decode_load_request(body) == LoadRequest(
        '{"max_batch_size": 2}', {"file:1/model.onnx": content}
    )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"parameters": {"config": {}}}', "must have string type"),
        (b'{"parameters": {"file:1/m": 5}}', "must have a base64 string"),
        (b'{"parameters": {"file:1/m": "not base64!"}}', "is not valid base64"),
        (b'{"parameters": {"other": "x"}}', "Unrecognized load parameter 'other'"),
        (b'{"parameters": "config"}', "'parameters' must be a JSON object"),
    ],
)
def test_bad_load_requests(body, needle):
    assert needle in invalid(decode_load_request, body)


def test_unload_request():
    assert decode_unload_request(b"") is False
    assert decode_unload_request(b'{"parameters": {}}') is False
    assert decode_unload_request(b'{"parameters": {"unload_dependents": true}}') is True
    body = b'{"parameters": {"unload_dependents": "true"}}'
    assert "Unable to parse 'unload_dependents'" in invalid(decode_unload_request, body)


def test_index_json_leaves_out_what_is_empty():
    entries = [
        RepositoryEntry("idle"),
        RepositoryEntry("broken", "", "UNAVAILABLE", "no config"),
        RepositoryEntry("m", "2", "READY"),
    ]
    assert repository_index_json(entries) == [
        {"name": "idle"},
        {"name": "broken", "state": "UNAVAILABLE", "reason": "no config"},
        {"name": "m", "version": "2", "state": "READY"},
    ]


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"[" * MAX_JSON_NESTING_DEPTH + b"]" * MAX_JSON_NESTING_DEPTH,
        b"[" + b"[1], " * 10_000 + b"[2]]",  # many brackets, shallow
        b'{"a": "' + b"[" * 10_000 + b'"}',  # brackets inside a string
        b'{"a": "\\"' + b"[" * 500 + b'"}',  # ... after an escaped quote
    ],
)
def test_json_within_the_depth_limit(text):
    check_json_depth(text)
    check_json_depth(memoryview(text))


@pytest.mark.parametrize(
    "text",
    [
        b"[" * (MAX_JSON_NESTING_DEPTH + 1) + b"]" * (MAX_JSON_NESTING_DEPTH + 1),
        b'{"a": ' * 101 + b"1" + b"}" * 101,
        b"[" * 3_000_000,  # unbalanced and huge: refused, not parsed
    ],
)
def test_json_over_the_depth_limit(text):
    message = invalid(check_json_depth, text)
    assert message == "JSON nesting depth exceeds maximum allowed (100)"
