"""Loading one model folder: config, auto-complete, versions, instances, scheduler."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from tidal.backends.base import Backend, ModelInstance
from tidal.backends.registry import backend_name_for, get_backend, platform_for
from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError, read_model_config
from tidal.config.validation import normalize_config, validate_config
from tidal.core.states import ModelState
from tidal.repository.layout import version_dirs
from tidal.repository.model_table import LoadedVersion, ModelRecord, VersionRecord
from tidal.scheduling.factory import build_scheduler
from tidal.scheduling.instance_pool import InstancePool
from tidal.scheduling.statistics import ModelStatistics

logger = logging.getLogger(__name__)


async def load_model(name: str, model_dir: Path, *, auto_complete: bool) -> ModelRecord:
    """Load every version the policy selects; failures are recorded, never raised."""
    record = ModelRecord(name=name, path=model_dir, state=ModelState.LOADING)
    try:
        config, backend, versions = await asyncio.to_thread(
            prepare_config, model_dir, auto_complete
        )
    except ConfigError as exc:
        record.state, record.reason = ModelState.UNAVAILABLE, str(exc)
        return record
    record.config = config
    selected = config.version_policy.select(versions)
    if not selected:
        record.state = ModelState.UNAVAILABLE
        record.reason = (
            f"model '{name}': no version folder in {model_dir} matches the version policy"
        )
        return record
    for version in selected:
        record.versions[version] = await _load_version(config, backend, version, versions[version])
    ready = record.ready_versions()
    record.state = ModelState.READY if ready else ModelState.UNAVAILABLE
    if not ready:
        record.reason = "; ".join(r.reason for r in record.versions.values())
    return record


def prepare_config(
    model_dir: Path, auto_complete: bool
) -> tuple[ModelConfig, Backend, dict[int, Path]]:
    """The effective configuration of a model folder, its backend and its version folders."""
    config = read_model_config(model_dir)
    versions = version_dirs(model_dir)
    backend_name = backend_name_for(config, [versions[v] for v in sorted(versions)])
    backend = get_backend(backend_name)
    config = replace(
        config,
        name=config.name or model_dir.name,
        backend=config.backend or backend_name,
        platform=config.platform or platform_for(backend_name),
    )
    if auto_complete and versions:
        config = backend.auto_complete(config, versions[max(versions)])
    config = normalize_config(config)
    validate_config(config)
    return config, backend, versions


async def _load_version(
    config: ModelConfig, backend: Backend, version: int, version_dir: Path
) -> VersionRecord:
    try:
        instances = await asyncio.to_thread(
            _create_instances, config, backend, version, version_dir
        )
        labels = await asyncio.to_thread(_read_labels, config, version_dir.parent)
    except ConfigError as exc:
        return VersionRecord(version, ModelState.UNAVAILABLE, reason=str(exc))
    except Exception as exc:  # a backend's own failure must not take the server down
        logger.exception("model '%s' version %d failed to load", config.name, version)
        reason = f"model '{config.name}' version {version} failed to load: {exc}"
        return VersionRecord(version, ModelState.UNAVAILABLE, reason=reason)
    pool = InstancePool(instances, name=f"{config.name}-{version}")
    stats = ModelStatistics()
    loaded = LoadedVersion(
        name=config.name,
        version=version,
        config=config,
        scheduler=build_scheduler(config, pool, stats),
        stats=stats,
        labels=labels,
    )
    logger.info("loaded model '%s' version %d (%d instance(s))", config.name, version, pool.size)
    return VersionRecord(version, ModelState.READY, loaded=loaded)


def _create_instances(
    config: ModelConfig, backend: Backend, version: int, version_dir: Path
) -> list[ModelInstance]:
    instances: list[ModelInstance] = []
    try:
        for group in config.instance_groups:
            for device in _devices(group.kind, group.gpus):
                for _ in range(group.count):
                    instances.append(backend.create_instance(config, version_dir, device, version))
    except BaseException:
        for instance in instances:
            instance.close()
        raise
    return instances


def _devices(kind: str, gpus: tuple[int, ...]) -> list[str]:
    if kind == "KIND_GPU":
        return [f"gpu:{gpu}" for gpu in gpus or (0,)]
    return ["cpu"]


def _read_labels(config: ModelConfig, model_dir: Path) -> dict[str, list[str]]:
    labels = {}
    for output in config.outputs:
        if not output.label_filename:
            continue
        path = model_dir / output.label_filename
        try:
            labels[output.name] = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
                f"model '{config.name}': output '{output.name}': cannot read label file "
                f"{path}: {exc}"
            ) from None
    return labels
