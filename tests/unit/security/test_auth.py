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
