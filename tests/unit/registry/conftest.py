from __future__ import annotations

from pathlib import Path

import pytest

from tidal.registry import ModelRegistry


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create ``root`` holding ``files`` (POSIX relative path -> bytes); return ``root``."""
    for relpath, data in files.items():
        target = root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def stored_objects(home: Path) -> list[Path]:
    """Every object file in the store (temp files excluded)."""
    objects = home / "objects"
    return sorted(p for p in objects.glob("??/*") if p.is_file())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def registry(home: Path) -> ModelRegistry:
    return ModelRegistry(home)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "src" / "models",
        {
            "triton/identity/config.pbtxt": b'name: "identity"\n',
            "triton/identity/1/model.onnx": b"\x08\x07" * 4096,
        },
    )
