"""Shared by the unit tests that read ``tidal serve`` flags into ``ServerSettings``."""

from __future__ import annotations

import os

import pytest

from tidal.cli.main import build_parser, settings_from_args
from tidal.config import ServerSettings


def clear_tidal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset every TIDAL_* variable, so they cannot change the defaults under test."""
    for key in list(os.environ):
        if key.startswith("TIDAL_"):
            monkeypatch.delenv(key)


def settings(*flags: str) -> ServerSettings:
    """The settings ``tidal serve FLAGS`` would run with."""
    return settings_from_args(build_parser().parse_args(["serve", *flags]))
