"""Loading one model folder: config, auto-complete, versions, instances, scheduler."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tidal.backends.base import Backend, ModelInstance
from tidal.backends.registry import backend_name_for, get_backend, platform_for
from tidal.config.ensemble import check_ensemble_steps
from tidal.config.model_config import ModelConfig
from tidal.config.pbtxt import ConfigError, read_model_config
from tidal.config.validation import normalize_config, validate_config
from tidal.core.states import ModelState
from tidal.repository.layout import version_dirs
from tidal.repository.model_table import LoadedVersion, ModelRecord, VersionRecord
from tidal.repository.warmup import run_warmup
from tidal.scheduling.ensemble import EnsembleScheduler
from tidal.scheduling.factory import build_scheduler
from tidal.scheduling.instance_pool import InstancePool
from tidal.scheduling.statistics import ModelStatistics

if TYPE_CHECKING:
    from tidal.repository.manager import ModelRepository

logger = logging.getLogger(__name__)


async def load_model(
    name: str,
    model_dir: Path,
    *,
    auto_complete: bool,
    config: ModelConfig | None = None,
    repository: ModelRepository | None = None,
) -> ModelRecord:
    """Load every version the policy selects; failures are recorded, never raised.

    ``config`` replaces the folder's ``config.pbtxt`` (a load request's override).
    """
    record = ModelRecord(name=name, path=model_dir, state=ModelState.LOADING)
    try:
        config, backend, versions = await asyncio.to_thread(
            prepare_config, model_dir, auto_complete, config
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
        if config.is_ensemble:  # steps run on the repository's models: no instances
            record.versions[version] = _ensemble_version(config, version, model_dir, repository)
            continue
        record.versions[version] = await _load_version(
            config, backend, version, versions[version], model_dir
        )
    ready = record.ready_versions()
    record.state = ModelState.READY if ready else ModelState.UNAVAILABLE
    if not ready:
        record.reason = "; ".join(r.reason for r in record.versions.values())
    return record


def prepare_config(
    model_dir: Path, auto_complete: bool, override: ModelConfig | None = None
) -> tuple[ModelConfig, Backend, dict[int, Path]]:
    """The effective configuration of a model folder, its backend and its version folders."""
    config = override if override is not None else read_model_config(model_dir)
    if override is not None and not config.name:
        config = replace(config, name=model_dir.name)
    versions = version_dirs(model_dir)
    backend_name = backend_name_for(config, [versions[v] for v in sorted(versions)])
    backend = get_backend(backend_name)
    config = replace(
        config,
        name=config.name or model_dir.name,
        backend=config.backend or ("" if config.is_ensemble else backend_name),
        platform=config.platform or platform_for(backend_name),
    )
    if auto_complete and versions:
        config = backend.auto_complete(config, versions[max(versions)])
    config = normalize_config(config)
    validate_config(config)
    return config, backend, versions


async def _load_version(
    config: ModelConfig, backend: Backend, version: int, version_dir: Path, model_dir: Path
) -> VersionRecord:
    try:
        labels = await asyncio.to_thread(_read_labels, config, model_dir)
        instances = await asyncio.to_thread(
            _create_instances, config, backend, version, version_dir, model_dir
        )
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


def _ensemble_version(
    config: ModelConfig, version: int, model_dir: Path, repository: ModelRepository | None
) -> VersionRecord:
    try:
        if repository is None:
            raise ConfigError(f"ensemble '{config.name}' needs a repository to run its steps")
        check_ensemble_steps(config, lambda name, v: repository.resolve(name, v).config)
        labels = _read_labels(config, model_dir)
    except ConfigError as exc:
        return VersionRecord(version, ModelState.UNAVAILABLE, reason=str(exc))
    stats = ModelStatistics()
    scheduler = EnsembleScheduler(config, version, stats, repository.run_step)
    loaded = LoadedVersion(
        name=config.name,
        version=version,
        config=config,
        scheduler=scheduler,
        stats=stats,
        labels=labels,
    )
    return VersionRecord(version, ModelState.READY, loaded=loaded)


def _create_instances(
    config: ModelConfig, backend: Backend, version: int, version_dir: Path, model_dir: Path
) -> list[ModelInstance]:
    """Every instance of a version, warmed up; none is left open when one fails."""
    instances: list[ModelInstance] = []
    try:
        for group in config.instance_groups:
            for device in _devices(group.kind, group.gpus):
                for _ in range(group.count):
                    instances.append(backend.create_instance(config, version_dir, device, version))
        run_warmup(config, version, model_dir, instances)
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
