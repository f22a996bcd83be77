"""Which Python interpreter runs a model's workers (``EXECUTION_ENV_PATH``)."""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError

ENV_PARAMETER = "EXECUTION_ENV_PATH"
MODEL_DIR_VARIABLE = "$$TRITON_MODEL_DIRECTORY"
_ARCHIVES = (".tar.gz", ".tgz", ".tar")
_INTERPRETERS = ("bin/python3", "bin/python", "python.exe", "Scripts/python.exe")


def interpreter_for(config: ModelConfig, model_dir: Path) -> str:
    """The server's own interpreter, or the one of the environment the model names: a
    virtual-environment or conda folder, or a ``conda-pack`` archive (unpacked once)."""
    value = config.parameters.get(ENV_PARAMETER, "").strip()
    if not value:
        return sys.executable
    path = Path(value.replace(MODEL_DIR_VARIABLE, str(model_dir))).expanduser()
    where = f"model '{config.name}': parameter {ENV_PARAMETER} '{value}'"
    if path.is_file() and path.name.endswith(_ARCHIVES):
        path = _unpacked(path, where)
    if not path.is_dir():
        raise ConfigError(f"{where}: {path} is not a directory or a .tar.gz environment archive")
    for candidate in _INTERPRETERS:
        if (path / candidate).is_file():
            return str(path / candidate)
    raise ConfigError(f"{where}: no Python interpreter in {path} (looked for bin/python3)")


def _unpacked(archive: Path, where: str) -> Path:
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
        raise ConfigError(f"{where}: cannot unpack {archive}: {exc}") from None
    return target
