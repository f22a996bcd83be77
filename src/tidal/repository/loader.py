"""Loading one model folder: config, auto-complete, versions, instances, scheduler."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tidal.backends.base import Backend, ModelInstance
from tidal.backends.registry import (
    backend_name_for,
    default_model_filename,
    get_backend,
    platform_for,
)
from tidal.config.ensemble import check_ensemble_steps
from tidal.config.model_config import ModelConfig
from tidal.config.paths import inside_model_dir, scrub_paths
from tidal.config.pbtxt import ConfigError, read_model_config
from tidal.config.validation import normalize_config, validate_config
from tidal.core.states import ModelState
from tidal.repository.confinement import check_model_paths
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
    allow_symlinks_out: bool = False,
) -> ModelRecord:
    """Load every version the policy selects; failures are recorded, never raised.

    ``config`` replaces the folder's ``config.pbtxt`` (a load request's override). Every path
    the effective configuration names must lie inside ``model_dir`` (see
    :mod:`tidal.config.paths`); ``allow_symlinks_out`` lets symbolic links in it point out.
    Reasons name files from the repository, never by their absolute server path.
    """
    record = ModelRecord(name=name, path=model_dir, state=ModelState.LOADING)
    try:
        effective, backend, versions = await asyncio.to_thread(
            prepare_config, model_dir, auto_complete, config, name, allow_symlinks_out
        )
    except ConfigError as exc:
        logger.error("model '%s' (%s) failed to load: %s", name, model_dir, exc)
        record.state, record.reason = ModelState.UNAVAILABLE, _shown(str(exc), model_dir)
        return record
    record.config = effective
    await _load_versions(record, effective, backend, versions, repository, allow_symlinks_out)
    ready = record.ready_versions()
    record.state = ModelState.READY if ready else ModelState.UNAVAILABLE
    if not ready and record.versions:
        record.reason = "; ".join(r.reason for r in record.versions.values())
    return record


async def _load_versions(
    record: ModelRecord,
    config: ModelConfig,
    backend: Backend,
    versions: dict[int, Path],
    repository: ModelRepository | None,
    allow_symlinks_out: bool,
) -> None:
    selected = config.version_policy.select(versions)
    if not selected:
        record.reason = f"model '{record.name}': no version folder matches the version policy"
    model_dir = record.path
    for version in selected:
        if config.is_ensemble:  # steps run on the repository's models: no instances
            entry = _ensemble_version(config, version, model_dir, repository, allow_symlinks_out)
        else:
            entry = await _load_version(
                config, backend, version, versions[version], model_dir, allow_symlinks_out
            )
        entry.reason = _shown(entry.reason, model_dir)
        record.versions[version] = entry


def prepare_config(
    model_dir: Path,
    auto_complete: bool,
    override: ModelConfig | None = None,
    name: str = "",
    allow_symlinks_out: bool = False,
) -> tuple[ModelConfig, Backend, dict[int, Path]]:
    """The effective configuration of a model folder, its backend and its version folders.

    Every path the configuration names is checked against the folder before a file it names
    is looked at: first as given, then with the backend's default model file, and again after
    auto-complete (which may name files of its own).
    """
    name = name or model_dir.name
    config = override if override is not None else read_model_config(model_dir)
    if override is not None and not config.name:
        config = replace(config, name=name)
    versions = version_dirs(model_dir)

    def check(config: ModelConfig, default_filename: str = "") -> None:
        check_model_paths(
            config,
            model_dir,
            versions,
            default_filename=default_filename,
            allow_symlinks_out=allow_symlinks_out,
        )

    check(config)
    backend_name = backend_name_for(config, [versions[v] for v in sorted(versions)])
    default_filename = default_model_filename(backend_name)
    check(config, default_filename)
    backend = get_backend(backend_name)
    config = replace(
        config,
        name=config.name or name,
        backend=config.backend or ("" if config.is_ensemble else backend_name),
        platform=config.platform or platform_for(backend_name),
    )
    if auto_complete and versions:
        config = backend.auto_complete(config, versions[max(versions)])
        check(config, default_filename)
    config = normalize_config(config)
    validate_config(config)
    return config, backend, versions


def _shown(reason: str, model_dir: Path) -> str:
    """A reason as clients may read it: files named from the repository (a pushed model's
    temporary folder by its own name), not by their absolute server path."""
    return scrub_paths(reason, model_dir.parent)


async def _load_version(
    config: ModelConfig,
    backend: Backend,
    version: int,
    version_dir: Path,
    model_dir: Path,
    allow_symlinks_out: bool,
) -> VersionRecord:
    try:
        labels = await asyncio.to_thread(_read_labels, config, model_dir, allow_symlinks_out)
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
    config: ModelConfig,
    version: int,
    model_dir: Path,
    repository: ModelRepository | None,
    allow_symlinks_out: bool,
) -> VersionRecord:
    try:
        if repository is None:
            raise ConfigError(f"ensemble '{config.name}' needs a repository to run its steps")
        check_ensemble_steps(config, lambda name, v: repository.resolve(name, v).config)
        labels = _read_labels(config, model_dir, allow_symlinks_out)
    except ConfigError as exc:
        return VersionRecord(version, ModelState.UNAVAILABLE, reason=str(exc))
    assert repository is not None
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


def _read_labels(
    config: ModelConfig, model_dir: Path, allow_symlinks_out: bool
) -> dict[str, list[str]]:
    labels = {}
    for output in config.outputs:
        if not output.label_filename:
            continue
        path = inside_model_dir(
            model_dir,
            output.label_filename,
            model=config.name,
            field="label_filename",
            allow_symlinks_out=allow_symlinks_out,
        )
        try:
            labels[output.name] = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise ConfigError(
                f"model '{config.name}': output '{output.name}': cannot read label_filename "
                f"'{output.label_filename}': {reason}"
            ) from None
    return labels
