"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .settings_helpers import clear_tidal_environment
from .tiny_onnx import write_ident_repository


@pytest.fixture
def ident_repo(tmp_path: Path) -> Path:
    """A repository holding the model ``ident`` (FP32 ``x`` -> ``y``, batched up to 4)."""
    return write_ident_repository(tmp_path / "repo")


@pytest.fixture
def no_tidal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TIDAL_* variable set, so none can change the defaults under test."""
    clear_tidal_environment(monkeypatch)
