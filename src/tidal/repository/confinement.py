"""Every path a model's configuration names, checked against the model's folder before any
of those files is opened (see :mod:`tidal.config.paths` for the rule)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tidal.backends.python.environment import ENV_PARAMETER, environment_value
from tidal.config.model_config import ModelConfig
from tidal.config.paths import inside_model_dir
from tidal.repository.warmup import WARMUP_FOLDER, WARMUP_WITHIN


def check_model_paths(
    config: ModelConfig,
    model_dir: Path,
    versions: Mapping[int, Path],
    *,
    default_filename: str = "",
    allow_symlinks_out: bool = False,
) -> None:
    """Raise ``ConfigError`` naming the first field whose path leaves ``model_dir``.

    The model file is checked in every version folder: ``default_model_filename``, or
    ``default_filename`` (the backend's) when the configuration leaves it out; with neither,
    the model file is not checked yet.
    """

    def check(folder: Path, value: str, field: str, **where: str) -> None:
        inside_model_dir(
            folder,
            value,
            model=config.name,
            field=field,
            allow_symlinks_out=allow_symlinks_out,
            **where,
        )

    filename = config.default_model_filename or default_filename
    if filename and not config.is_ensemble:
        for version in sorted(versions):
            check(model_dir, filename, "default_model_filename", start=versions[version].name)
    for output in config.outputs:
        if output.label_filename:
            check(model_dir, output.label_filename, "label_filename")
    environment = environment_value(config)
    if environment is not None:
        check(model_dir, environment[1], ENV_PARAMETER, shown=environment[0])
    for sample in config.model_warmup:
        for spec in sample.inputs:
            if spec.source == "file":
                check(model_dir / WARMUP_FOLDER, spec.file, "input_data_file", within=WARMUP_WITHIN)
