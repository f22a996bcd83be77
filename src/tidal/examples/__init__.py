"""Built-in example model repository shipped with tidal."""

from __future__ import annotations

import pathlib

__all__ = ["example_repository"]


def example_repository() -> pathlib.Path:
    """Return the path of the bundled example model repository."""
    return pathlib.Path(__file__).parent / "model_repository"
