"""Key generation, the keys file format and the constant-time key check."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path

import pytest

import tidal.security
from tidal.security import keys as keys_module
from tidal.security.keys import KeyHashes, generate_key, hash_key, load_keys_file, write_keys_file


def test_public_api_is_pinned() -> None:
    assert tidal.security.__all__ == [
        "DEFAULT_OPEN_PATHS",
        "BearerAuth",
        "KeyHashes",
        "generate_key",
        "hash_key",
        "load_keys_file",
        "write_keys_file",
    ]


def test_generated_keys_are_long_random_and_url_safe() -> None:
    made = {generate_key() for _ in range(50)}
    assert len(made) == 50
    for key in made:
        assert len(key) >= 43
        assert set(key) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_hash_key_is_hex_sha256() -> None:
    assert hash_key("abc") == hashlib.sha256(b"abc").hexdigest()


def test_both_keys_match_and_nothing_else() -> None:
    hashes = KeyHashes.of("first-key", "second-key")
    assert hashes.matches("first-key")
    assert hashes.matches("second-key")
    for wrong in ("", "first-key ", "First-key", "second", hashes.primary_sha256, "é\udcff"):
        assert not hashes.matches(wrong)


def test_check_compares_both_digests_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check runs hmac.compare_digest on both digests, whichever key matches."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys_module.hmac, "compare_digest", counting)
    hashes = KeyHashes.of("first-key", "second-key")
    for key in ("first-key", "second-key", "wrong"):
        seen.clear()
        hashes.matches(key)
        assert len(seen) == 2
        assert all(len(a) == len(b) == 32 for a, b in seen)  # digests, never the keys


@pytest.mark.parametrize("digest", ["", "ab", "z" * 64, "a" * 63, "a" * 65])
def test_digests_must_be_sha256_hex(digest: str) -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        KeyHashes(digest, "a" * 64)


def test_upper_case_digests_are_accepted() -> None:
    hashes = KeyHashes(hash_key("k").upper(), hash_key("j"))
    assert hashes.matches("k")


def test_keys_file_round_trip_stores_digests_only(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keys_file(path, KeyHashes.of("plain-one", "plain-two"))
    text = path.read_text()
    assert "plain-one" not in text and "plain-two" not in text
    assert json.loads(text) == {
        "primary_key_sha256": hash_key("plain-one"),
        "secondary_key_sha256": hash_key("plain-two"),
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_keys_file(path)
    assert loaded.matches("plain-one") and loaded.matches("plain-two")


def test_keys_file_is_not_replaced_without_force(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_keys_file(path, KeyHashes.of("a", "b"))
    with pytest.raises(FileExistsError):
        write_keys_file(path, KeyHashes.of("c", "d"))
    write_keys_file(path, KeyHashes.of("c", "d"), force=True)
    assert load_keys_file(path).matches("c")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the keys file"),
        ("", "is not JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"primary_key_sha256": "' + "a" * 64 + '"}', "lacks secondary_key_sha256"),
        ('{"primary_key_sha256": 1, "secondary_key_sha256": 2}', "lacks primary_key_sha256"),
        ('{"primary_key_sha256": "x", "secondary_key_sha256": "y"}', "64 hex digits"),
    ],
)
def test_unusable_keys_files_say_why(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_keys_file(path)
