"""Which Python interpreter runs a model's workers (``EXECUTION_ENV_PATH``)."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from tidal.config.model_config import ModelConfig
from tidal.config.paths import inside_model_dir, scrub_paths
from tidal.config.pbtxt import ConfigError

ENV_PARAMETER = "EXECUTION_ENV_PATH"
MODEL_DIR_VARIABLE = "$$TRITON_MODEL_DIRECTORY"
_ARCHIVES = (".tar.gz", ".tgz", ".tar")
_INTERPRETERS = ("bin/python3", "bin/python", "python.exe", "Scripts/python.exe")


def environment_value(config: ModelConfig) -> tuple[str, str] | None:
    """The ``EXECUTION_ENV_PATH`` as configured and as a path relative to the model's folder
    (``$$TRITON_MODEL_DIRECTORY/`` stands for that folder); None when the model has none."""
    value = config.parameters.get(ENV_PARAMETER, "").strip()
    if not value:
        return None
    relative = value
    if relative.startswith(MODEL_DIR_VARIABLE):
        relative = relative[len(MODEL_DIR_VARIABLE) :].lstrip("/") or "."
    return value, relative


def interpreter_for(config: ModelConfig, model_dir: Path) -> str:
    """The server's own interpreter, or the one of the environment the model names inside
    its folder: a virtual-environment or conda folder, or a ``conda-pack`` archive (unpacked
    once). The loader has checked the path against the model's folder, links followed; this
    keeps the rule that no absolute path or ``..`` leaves it."""
    environment = environment_value(config)
    if environment is None:
        return sys.executable
    value, relative = environment
    path = inside_model_dir(
        model_dir,
        relative,
        model=config.name,
        field=ENV_PARAMETER,
        shown=value,
        allow_symlinks_out=True,
    )
    where = f"model '{config.name}': parameter {ENV_PARAMETER} '{value}'"
    if path.is_file() and path.name.endswith(_ARCHIVES):
        path = _unpacked(path, where, model_dir)
    if not path.is_dir():
        raise ConfigError(f"{where}: not a directory or a .tar.gz environment archive")
    for candidate in _INTERPRETERS:
        if (path / candidate).is_file():
            return str(path / candidate)
    raise ConfigError(f"{where}: no Python interpreter in it (looked for bin/python3)")


def _unpacked(archive: Path, where: str, model_dir: Path) -> Path:
    """Unpack an environment archive into a cache folder keyed by its path, size and time."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = Path(tempfile.gettempdir()) / "tidal-python-envs" / key.hexdigest()[:16]
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="unpack-", dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:  # Python before 3.10.12 / 3.11.4
                tar.extractall(staging)  # the model's own archive
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if (target / ".complete").exists():  # another loader unpacked it meanwhile
            return target
        reason = scrub_paths(str(exc), model_dir.parent, target.parent)
        raise ConfigError(f"{where}: cannot unpack it: {reason}") from None
    return target
