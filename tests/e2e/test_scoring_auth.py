"""``tidal score --auth-keys-file``: bearer keys in front of /score, health left open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tidal.security.keys import KeyHashes, write_keys_file

from .score_scripts import JSON_SCRIPT, ScoreServer, write_script

PRIMARY = "primary-key-for-tests"
SECONDARY = "secondary-key-for-tests"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScoreServer]:
    folder = tmp_path_factory.mktemp("secured")
    keys = folder / "keys.json"
    write_keys_file(keys, KeyHashes.of(PRIMARY, SECONDARY))
    script = write_script(folder, JSON_SCRIPT)
    server = ScoreServer(["--entry_script", str(script), "--auth-keys-file", str(keys)])
    yield server.wait_started()
    server.stop()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer not-the-key", 401),
        (f"Basic {PRIMARY}", 401),
        (f"Bearer {PRIMARY}", 200),
        (f"Bearer {SECONDARY}", 200),
    ],
    ids=["no-key", "wrong-key", "wrong-scheme", "primary", "secondary"],
)
def test_score_needs_a_key(secured: ScoreServer, authorization: str | None, status: int) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    with httpx.Client(base_url=secured.base_url, timeout=30) as http:
        response = http.post("/score", json={"x": 1}, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["message"]


def test_health_is_open(secured: ScoreServer) -> None:
    with httpx.Client(base_url=secured.base_url, timeout=30) as http:
        assert http.get("/").text == "Healthy"
        assert http.get("/swagger.json").status_code == 401


def test_a_bad_keys_file_is_a_usage_error(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text("{}")
    script = write_script(tmp_path, JSON_SCRIPT)
    server = ScoreServer(["--entry_script", str(script), "--auth-keys-file", str(keys)])
    assert server.wait_exited() == 2
    assert "keys file" in server.stderr
