"""What a load request may bring along: a JSON config and the files of a model folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as pb

from tidal.config.model_config import ModelConfig
from tidal.config.paths import inside_model_dir
from tidal.config.pbtxt import ConfigError
from tidal.config.proto import from_proto
from tidal.core.errors import InferenceError

FILE_PREFIX = "file:"


def parse_config_override(name: str, text: str) -> ModelConfig:
    """A model configuration given as JSON (Triton's ``parameters.config``)."""
    message = pb.ModelConfig()
    try:
        json_format.Parse(text, message)
        config = from_proto(message)
    except (json_format.ParseError, ValueError, RecursionError) as exc:
        raise InferenceError.invalid(f"Invalid config override: {exc}") from None
    if config.name and config.name != name:
        raise InferenceError.invalid(
            f"unexpected directory name '{name}' for model '{config.name}', directory name "
            "must equal model name"
        )
    return config


def write_override_files(name: str, files: Mapping[str, bytes]) -> Path:
    """A new temporary model folder holding ``files`` (keys ``file:<relative path>``)."""
    paths: dict[PurePosixPath, bytes] = {}
    for key, content in files.items():
        paths[_relative_path(key)] = content
    folder = Path(tempfile.mkdtemp(prefix=f"tidal-{_safe(name)}-"))
    try:
        for relative, content in paths.items():
            target = _target(folder, relative)
            for parent in reversed(target.relative_to(folder).parents):
                if (folder / parent).is_file():
                    raise InferenceError.invalid(
                        f"Invalid file parameter '{FILE_PREFIX}{relative}', directory has been "
                        "created as a file"
                    )
            if target.is_dir():
                raise InferenceError.invalid(
                    f"Invalid file parameter '{FILE_PREFIX}{relative}', a directory has the "
                    "same path"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    except BaseException:
        remove_override_files(folder)
        raise
    return folder


def remove_override_files(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _relative_path(key: str) -> PurePosixPath:
    """The path a ``file:`` parameter names, which must stay inside the model folder."""
    text = key[len(FILE_PREFIX) :] if key.startswith(FILE_PREFIX) else ""
    path = PurePosixPath(text)
    if (
        not text
        or "\\" in text
        or "\0" in text
        or path.is_absolute()
        or any(part in ("..", ".") for part in path.parts)
        or text.endswith("/")
    ):
        raise _invalid_file(key)
    return path


def _target(folder: Path, relative: PurePosixPath) -> Path:
    """Where a pushed file lands: inside the new model folder, by the rule every other path a
    model names follows (:mod:`tidal.config.paths`)."""
    key = f"{FILE_PREFIX}{relative}"
    try:
        return inside_model_dir(folder, str(relative), model=folder.name, field=key)
    except ConfigError:
        raise _invalid_file(key) from None


def _invalid_file(key: str) -> InferenceError:
    return InferenceError.invalid(
        f"Invalid file parameter '{key}': expected '{FILE_PREFIX}<version>/<file name>', a "
        "relative path inside the model folder"
    )


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]
