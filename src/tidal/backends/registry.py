"""Backends found by name through a lazy table, plus the ``tidal.backends`` entry points."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from tidal.backends.base import Backend
from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError

# "name": "module:attribute"; imported on first use so `import tidal` stays light.
_BUILTIN: dict[str, str] = {
    "onnxruntime": "tidal.backends.onnxruntime:OnnxRuntimeBackend",
    "pytorch": "tidal.backends.torchscript:TorchScriptBackend",
    "ensemble": "tidal.backends.ensemble:EnsembleBackend",
    "python": "tidal.backends.python.backend:PythonBackend",
}

# Triton platform names and the backend serving each.
_PLATFORMS: dict[str, str] = {
    "onnxruntime_onnx": "onnxruntime",
    "pytorch_libtorch": "pytorch",
    "ensemble": "ensemble",
}

# Model file names that identify a backend when the config names none.
_MODEL_FILES: dict[str, str] = {
    "model.onnx": "onnxruntime",
    "model.pt": "pytorch",
    "model.py": "python",
}

_ENTRY_POINT_GROUP = "tidal.backends"
_loaded: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; raise ``ConfigError`` when none is known."""
    if name in _loaded:
        return _loaded[name]
    target = _BUILTIN.get(name) or _entry_point_target(name)
    if target is None:
        known = sorted(set(_BUILTIN) | {ep.name for ep in entry_points(group=_ENTRY_POINT_GROUP)})
        raise ConfigError(f"unknown backend '{name}' (known: {', '.join(known)})")
    module_name, _, attribute = target.partition(":")
    backend = getattr(importlib.import_module(module_name), attribute)()
    _loaded[name] = backend
    return backend


def backend_name_for(config: ModelConfig, version_dirs: list[Path]) -> str:
    """The backend a model uses: its config's ``backend``, its ``platform``, or its files."""
    if config.backend:
        return config.backend
    if config.platform:
        if config.platform not in _PLATFORMS:
            raise ConfigError(
                f"model '{config.name}': unsupported platform '{config.platform}' "
                f"(supported: {', '.join(sorted(_PLATFORMS))})"
            )
        return _PLATFORMS[config.platform]
    for version_dir in reversed(version_dirs):
        filename = config.default_model_filename
        for candidate, backend in _MODEL_FILES.items():
            if (version_dir / (filename or candidate)).exists() and (
                not filename or filename.endswith(Path(candidate).suffix)
            ):
                return backend
    raise ConfigError(
        f"model '{config.name}': no backend or platform in the configuration and no known "
        "model file (such as model.onnx) in its version folders"
    )


def default_model_filename(backend: str) -> str:
    """The model file a backend reads when the config names none (``model.onnx``), or ``""``."""
    return next((f for f, b in _MODEL_FILES.items() if b == backend), "")


def platform_for(backend: str) -> str:
    """The Triton platform name reported for a backend, or ``""``."""
    return next((p for p, b in _PLATFORMS.items() if b == backend), "")


def _entry_point_target(name: str) -> str | None:
    for entry_point in entry_points(group=_ENTRY_POINT_GROUP):
        if entry_point.name == name:
            return entry_point.value
    return None
