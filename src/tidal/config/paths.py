"""The confinement rule: a model is what lies inside its folder.

Every path that a configuration, a load request's override or a request names (the model
file, label files, the Python environment, warmup data) is resolved against the model's folder
with symbolic links followed, and refused when it lands outside. Refusals echo only the value
the configuration gave, never the resolved server path, and are decided before the file is
opened, so an answer never tells whether a file outside the folder exists.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError

MODEL_FOLDER = "the model's folder"


def inside_model_dir(
    model_dir: Path,
    value: str,
    *,
    model: str,
    field: str,
    start: str = "",
    within: str = MODEL_FOLDER,
    allow_symlinks_out: bool = False,
    shown: str = "",
) -> Path:
    """The path ``value`` names, read from ``model_dir / start``, known to stay inside
    ``model_dir``.

    Raises ``ConfigError`` (naming ``model`` and ``field``) when ``value`` is absolute, walks
    out of ``model_dir`` with ``..``, or (unless ``allow_symlinks_out``) resolves outside it
    through a symbolic link. ``within`` words the folder in the refusal, ``shown`` the value
    (when the configuration spelled it differently from ``value``).
    """
    wording = "is outside" if within == MODEL_FOLDER else "must name a file inside"
    refusal = ConfigError(f"model '{model}': {field} '{shown or value}' {wording} {within}")
    relative = PurePosixPath(value)
    if not value or "\0" in value or relative.is_absolute() or os.path.isabs(value):
        raise refusal
    folder = Path(os.path.realpath(model_dir))
    joined = Path(os.path.normpath(folder / start / relative))
    if not _is_within(joined, folder):  # ".." walks out whatever the links say
        raise refusal
    if not allow_symlinks_out and not _is_within(Path(os.path.realpath(joined)), folder):
        raise refusal
    # The path as the folder spells it (a linked file keeps its neighbours, as ONNX external
    # data expects), known now to stay inside.
    return Path(os.path.normpath(model_dir / start / relative))


def model_file(
    config: ModelConfig, version_dir: Path, default_filename: str, *, inner: str = ""
) -> Path:
    """A version's model file (``default_model_filename`` or the backend's default name),
    which must lie inside the model's folder and exist; when it is a folder, the file
    ``inner`` in it (ONNX models kept next to their external data). The loader has checked
    the path with symbolic links followed; this keeps the rule that no absolute path or
    ``..`` leaves."""
    filename = config.default_model_filename or default_filename
    path = inside_model_dir(
        version_dir.parent,
        filename,
        model=config.name,
        field="default_model_filename",
        start=version_dir.name,
        allow_symlinks_out=True,
    )
    if inner and path.is_dir():
        path, filename = path / inner, f"{filename}/{inner}"
    if not path.is_file():
        raise ConfigError(
            f"model '{config.name}': model file '{shown_path(config, version_dir, filename)}' "
            "not found"
        )
    return path


def shown_path(config: ModelConfig, version_dir: Path, filename: str) -> str:
    """A file of a version as a client may see it: ``<model>/<version>/<file>``."""
    return f"{config.name}/{version_dir.name}/{filename}"


def scrub_paths(text: str, *folders: Path) -> str:
    """``text`` with every absolute prefix of ``folders`` removed, so messages from libraries
    (ONNX Runtime, PyTorch) name files relative to the repository, not the server's disk."""
    prefixes: set[str] = set()
    for folder in folders:
        for form in (str(folder), os.path.realpath(folder)):
            prefixes.add(form.rstrip(os.sep) + os.sep)
    for prefix in sorted(prefixes, key=len, reverse=True):
        text = text.replace(prefix, "")
    return text


def is_model_name(name: str) -> bool:
    """Whether ``name`` can name a model folder: one plain path segment, never a path."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)
