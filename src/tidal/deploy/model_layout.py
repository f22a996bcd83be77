"""Where a registered model folder keeps the Triton repository a service serves."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["triton_subpath"]

TRITON_DIR = "triton"


def triton_subpath(relative_paths: Iterable[str]) -> str | None:
    """The repository's folder inside a registered model, from the model's file paths
    (relative to the registered folder, ``/``-separated):

    - ``"triton"``: Azure's layout, ``models/triton/<model>/<version>/...``;
    - ``""``: the folder is itself a repository (``<model>/config.pbtxt`` or
      ``<model>/<version>/<file>``), as tidal's built-in example is;
    - ``None``: neither, so only an entry script can use the model.
    """
    itself = False
    for path in relative_paths:
        parts = path.split("/")
        if parts[0] == TRITON_DIR and len(parts) > 1:
            return TRITON_DIR
        has_config = len(parts) == 2 and parts[1] == "config.pbtxt"
        in_version = len(parts) >= 3 and parts[1].isdigit()
        itself = itself or has_config or in_version
    return "" if itself else None
