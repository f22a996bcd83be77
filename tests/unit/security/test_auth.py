"""``BearerAuth.check``: open paths, missing and wrong keys, and the 401 reply's shape."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from tidal.security.auth import DEFAULT_OPEN_PATHS, BearerAuth
from tidal.security.keys import KeyHashes, write_keys_file

AUTH = BearerAuth(KeyHashes.of("primary-key", "secondary-key"))


@pytest.mark.parametrize("key", ["primary-key", "secondary-key"])
def test_valid_keys_pass(key: str) -> None:
    assert AUTH.check("/v2/models/m/infer", {"authorization": f"Bearer {key}"}) is None
    assert AUTH.check("/v2", {"authorization": f"bearer   {key}"}) is None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing key"),
        ({"authorization": ""}, "missing key"),
        ({"authorization": "Bearer"}, "missing key"),
        ({"authorization": "Basic cHJpbWFyeS1rZXk="}, "missing key"),
        ({"authorization": "primary-key"}, "missing key"),
        ({"authorization": "Bearer wrong"}, "invalid key"),
        ({"authorization": "Bearer primary-key2"}, "invalid key"),
    ],
)
def test_refusals_are_401_with_a_bearer_challenge(headers: dict[str, str], message: str) -> None:
    reply = AUTH.check("/v2/models/m", headers)
    assert reply is not None
    assert reply.status == 401
    assert reply.content_type == "application/json"
    assert ("www-authenticate", "Bearer") in reply.headers
    assert message in orjson.loads(reply.body)["error"]


def test_health_paths_are_open_by_default() -> None:
    assert DEFAULT_OPEN_PATHS == ("/", "/v2/health/live", "/v2/health/ready")
    for path in ("/", "/v2/health/live", "/v2/health/ready", "/v2/health/ready/"):
        assert AUTH.check(path, {}) is None
    for path in ("/v2", "/v2/health", "/v2/health/live/x", "/score", "/v2/models/m/ready"):
        assert AUTH.check(path, {}) is not None


def test_open_paths_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keys_file(path, KeyHashes.of("a", "b"))
    closed = BearerAuth.from_file(path, open_paths=())
    assert closed.check("/v2/health/live", {}) is not None
    custom = BearerAuth.from_file(path, open_paths=["/score/", ""])
    assert custom.check("/score", {}) is None
    assert custom.check("/v2/health/live", {}) is not None
    assert custom.check("/v2/health/live", {"authorization": "Bearer b"}) is None


def test_gate_runs_before_routing_in_http_handlers() -> None:
    """HttpHandlers answers with the gate's refusal, before any routing or model work."""
    from tidal.frontends.http.handlers import HttpHandlers

    handlers = HttpHandlers(server=None, gate=AUTH)  # type: ignore[arg-type] - never reached
    reply = asyncio.run(handlers.handle("GET", "/v2/models/missing", {}, b""))
    assert reply.status == 401
    assert ("www-authenticate", "Bearer") in reply.headers


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_a_rewritten_keys_file_replaces_the_keys(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "keys.json"
    write_keys_file(path, KeyHashes.of("old-primary", "old-secondary"))
    auth = BearerAuth.from_file(path)
    assert auth.check("/v2", _bearer("old-primary")) is None
    monkeypatch.setattr("tidal.security.auth.RELOAD_CHECK_SECONDS", 0.0)
    auth._next_check = 0.0  # the next request looks at the file
    write_keys_file(path, KeyHashes.of("new-primary", "old-secondary"), force=True)
    refused = auth.check("/v2", _bearer("old-primary"))
    assert refused is not None and refused.status == 401
    assert auth.check("/v2", _bearer("new-primary")) is None
    assert auth.check("/v2", _bearer("old-secondary")) is None


def test_a_broken_rewrite_keeps_the_current_keys(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "keys.json"
    write_keys_file(path, KeyHashes.of("primary-key", "secondary-key"))
    auth = BearerAuth.from_file(path)
    monkeypatch.setattr("tidal.security.auth.RELOAD_CHECK_SECONDS", 0.0)
    auth._next_check = 0.0
    path.write_text("{not json")
    assert auth.check("/v2", _bearer("primary-key")) is None
    path.unlink()
    assert auth.check("/v2", _bearer("secondary-key")) is None


def test_the_file_is_looked_at_once_a_second_at_most(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keys_file(path, KeyHashes.of("old-primary", "old-secondary"))
    auth = BearerAuth.from_file(path)
    write_keys_file(path, KeyHashes.of("new-primary", "new-secondary"), force=True)
    # Within RELOAD_CHECK_SECONDS of start-up the old keys still hold: no stat per request.
    assert auth.check("/v2", _bearer("old-primary")) is None
