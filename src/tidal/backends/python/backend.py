"""The Python backend: Triton-style ``model.py`` models, one worker process per instance."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as pb

from tidal.backends.python.config_json import config_from_dict, config_to_dict
from tidal.backends.python.environment import interpreter_for
from tidal.backends.python.instance import PythonModelInstance
from tidal.backends.python.process import WorkerFailed, WorkerProcess
from tidal.backends.python.supervisor import Supervisor, WorkerSpec, start_worker
from tidal.config import paths
from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_MODEL_FILENAME = "model.py"
_AUTO_COMPLETE_ARENA_BYTES = 1024 * 1024


class PythonBackend:
    """Serves ``model.py`` files that define ``TritonPythonModel``."""

    name = "python"

    def __init__(self) -> None:
        # (model, version) -> (id of the config being loaded, instances created for it), to
        # name instances as Triton does ("<group>_<index>").
        self._created: dict[tuple[str, int], tuple[int, int]] = {}

    def auto_complete(self, config: ModelConfig, version_dir: Path) -> ModelConfig:
        config = replace(
            config,
            backend=config.backend or self.name,
            default_model_filename=config.default_model_filename or DEFAULT_MODEL_FILENAME,
        )
        path = model_file(config, version_dir)
        # Starting a worker costs a process; a model that never mentions the hook has none.
        if "auto_complete_config" not in path.read_text(encoding="utf-8", errors="replace"):
            return config
        python = interpreter_for(config, version_dir.parent)
        worker = WorkerProcess(python, arena_bytes=_AUTO_COMPLETE_ARENA_BYTES)
        try:
            reply = worker.greet(
                "auto_complete", {"model_path": str(path), "config": config_to_dict(config)}
            )
        except WorkerFailed as exc:
            raise ConfigError(
                f"model '{config.name}': auto_complete_config failed: {exc}"
            ) from None
        finally:
            worker.close()
        if reply[1] is None:
            return config
        completed = config_from_dict(reply[1], config.name)
        return replace(completed, name=config.name)

    def create_instance(
        self, config: ModelConfig, version_dir: Path, device: str, version: int
    ) -> PythonModelInstance:
        _check_supported(config)
        path = model_file(config, version_dir)
        python = interpreter_for(config, version_dir.parent)
        instance_name = self._instance_name(config, version)
        kind, _, device_id = device.partition(":")
        args = {
            "model_config": json.dumps(config_to_dict(config)),
            "model_instance_kind": kind.upper(),
            "model_instance_name": instance_name,
            "model_instance_device_id": device_id or "0",
            "model_repository": str(version_dir.parent),
            "model_version": str(version),
            "model_name": config.name,
        }
        label = f"model '{config.name}' version {version} instance '{instance_name}'"
        spec = WorkerSpec(python=python, model_path=path, args=args, label=label)
        try:
            worker = start_worker(spec)
        except WorkerFailed as exc:
            raise ConfigError(f"{label}: failed to load: {exc}") from None
        except (
            OSError
        ) as exc:  # the interpreter's path is the server's: the log's, not the client's
            logger.error("%s: cannot start the Python worker %s: %s", label, python, exc)
            reason = exc.strerror or type(exc).__name__
            raise ConfigError(f"{label}: cannot start the Python worker: {reason}") from None
        return PythonModelInstance(config, version, Supervisor(spec, worker))

    def _instance_name(self, config: ModelConfig, version: int) -> str:
        key = (config.name, version)
        load, count = self._created.get(key, (id(config), 0))
        index = count if load == id(config) else 0
        self._created[key] = (id(config), index + 1)
        # The loader creates instances group by group, device by device, count by count.
        for group in config.instance_groups:
            size = group.count * (max(1, len(group.gpus)) if group.kind == "KIND_GPU" else 1)
            if index < size:
                return f"{group.name}_{index}"
            index -= size
        return f"{config.name}_{index}"


def model_file(config: ModelConfig, version_dir: Path) -> Path:
    """The model's Python file in a version folder."""
    return paths.model_file(config, version_dir, DEFAULT_MODEL_FILENAME)


def _check_supported(config: ModelConfig) -> None:
    message = pb.ModelConfig()
    message.ParseFromString(config.source)
    if message.model_transaction_policy.decoupled:
        raise ConfigError(
            f"model '{config.name}': decoupled Python models (model_transaction_policy "
            "{ decoupled: true }) are not supported"
        )
