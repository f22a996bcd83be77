"""``tidal keys generate``: prints two keys once, writes only their digests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidal.cli.main import main
from tidal.security.keys import load_keys_file


def test_generate_prints_keys_and_writes_digests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    assert main(["keys", "generate", "--out", str(path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["primary_key"] != shown["secondary_key"]
    stored = path.read_text()
    assert shown["primary_key"] not in stored and shown["secondary_key"] not in stored
    hashes = load_keys_file(path)
    assert hashes.matches(shown["primary_key"]) and hashes.matches(shown["secondary_key"])


def test_generate_refuses_to_replace_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    assert main(["keys", "generate", "--out", str(path)]) == 0
    before = path.read_text()
    assert main(["keys", "generate", "--out", str(path)]) == 1
    assert "exists (use --force" in capsys.readouterr().err
    assert path.read_text() == before
    assert main(["keys", "generate", "--out", str(path), "--force"]) == 0
    assert path.read_text() != before


def test_generate_reports_an_unwritable_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", "--out", str(tmp_path / "no" / "dir.json")]) == 1
    assert "cannot write" in capsys.readouterr().err
