"""Ensemble configurations: the data-flow checks made when an ensemble is read and when it is
loaded next to its step models, and the order in which ensembles must be loaded.

An ensemble tensor is a name in the ensemble's own namespace: an ensemble input, an ensemble
output, or an intermediate value one step writes (``output_map`` values) and later steps read
(``input_map`` values).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tidal.config.model_config import EnsembleStep, ModelConfig, TensorConfig
from tidal.config.pbtxt import ConfigError, read_model_config
from tidal.core.datatypes import DataType
from tidal.core.errors import InferenceError

ENSEMBLE_PLATFORM = "ensemble"

__all__ = [
    "ENSEMBLE_PLATFORM",
    "check_ensemble_config",
    "check_ensemble_steps",
    "ensemble_load_order",
    "step_version",
]


def step_version(step: EnsembleStep) -> int | None:
    """The version a step asks for; None (the latest ready one) for -1, or 0 when unset."""
    return step.model_version if step.model_version > 0 else None


def check_ensemble_config(config: ModelConfig) -> None:
    """Raise ``ConfigError`` when the ensemble's own graph cannot work: missing step fields, a
    tensor written twice, an input no step reads, an output no step writes, an unused tensor."""
    where = f"ensemble '{config.name}'"
    _check_ensemble_fields(config, where)
    writer = _step_writers(config, where)
    inputs = [t.name for t in config.inputs]
    read = {t for step in config.ensemble_steps for t in step.input_map.values()}
    _check_ensemble_inputs(inputs, writer, read, where)
    available = _flow(config.ensemble_steps, set(inputs))
    _check_ensemble_outputs(config, writer, available, where)
    _check_unused_tensors(config, writer, read, where)
    for index, step in enumerate(config.ensemble_steps):
        if not set(step.input_map.values()) <= available:
            raise ConfigError(
                f"{where}: step {index} (model '{step.model_name}') can never run: "
                + _blocked_reason(config, index, available, writer)
            )


def check_ensemble_steps(
    config: ModelConfig, step_config: Callable[[str, int | None], ModelConfig]
) -> None:
    """Raise ``ConfigError`` where the steps' models do not fit the ensemble's maps.

    ``step_config(name, version)`` gives the effective config of a loaded step model and raises
    ``InferenceError`` or ``ConfigError`` when it is not available.
    """
    where = f"ensemble '{config.name}'"
    shapes: dict[str, _TensorUse] = {}
    for tensor in (*config.inputs, *config.outputs):
        shapes[tensor.name] = _TensorUse.of(tensor, config, f"ensemble '{config.name}'")
    for index, step in enumerate(config.ensemble_steps):
        label = f"{where}: step {index} (model '{step.model_name}')"
        model = _step_model(step, step_config, label)
        if model.batching and model.max_batch_size < config.max_batch_size:
            raise ConfigError(
                f"{where} allows max_batch_size {config.max_batch_size} but its step model "
                f"'{step.model_name}' only {model.max_batch_size}"
            )
        _check_step_inputs(step, model, shapes, label, where)
        _check_step_outputs(step, model, shapes, label, where)


def ensemble_load_order(folders: Mapping[str, Path]) -> tuple[list[str], list[str]]:
    """Split model folders into plain models and ensembles, the ensembles ordered so that each
    comes after the ensembles it uses. A folder whose config cannot be read counts as plain
    (loading it reports the problem); ensembles that use each other keep their name order."""
    steps: dict[str, list[str]] = {}
    for name, folder in folders.items():
        try:
            config = read_model_config(folder)
        except ConfigError:
            continue
        if config.is_ensemble:
            steps[name] = [step.model_name for step in config.ensemble_steps]
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in ordered or name in visiting:
            return
        visiting.add(name)
        for used in steps[name]:
            if used in steps:
                visit(used)
        visiting.discard(name)
        ordered.append(name)

    for name in sorted(steps):
        visit(name)
    plain = [name for name in folders if name not in steps]
    return plain, ordered


# -- helpers ---------------------------------------------------------------------------------


def _check_ensemble_fields(config: ModelConfig, where: str) -> None:
    """The ensemble's own fields: the platform, and none of what only real models take."""
    if not config.is_ensemble:
        raise ConfigError(
            f"model '{config.name}': ensemble_scheduling needs platform \"{ENSEMBLE_PLATFORM}\", "
            f"got '{config.platform}'"
        )
    if config.instance_groups:
        raise ConfigError(f"{where}: instance_group must not be set for an ensemble")
    if config.model_warmup:
        raise ConfigError(f"{where}: model_warmup must not be set for an ensemble")
    if not config.ensemble_steps:
        raise ConfigError(f"{where}: ensemble_scheduling has no step")


def _step_writers(config: ModelConfig, where: str) -> dict[str, int]:
    """Each ensemble tensor a step writes, with that step's index; every step complete."""
    writer: dict[str, int] = {}
    for index, step in enumerate(config.ensemble_steps):
        label = f"{where}: step {index}"
        if not step.model_name:
            raise ConfigError(f"{label} has no model_name")
        if not step.input_map:
            raise ConfigError(f"{label} (model '{step.model_name}') has no input_map")
        if not step.output_map:
            raise ConfigError(f"{label} (model '{step.model_name}') has no output_map")
        for tensor in step.output_map.values():
            if tensor in writer:
                raise ConfigError(
                    f"{where}: ensemble tensor '{tensor}' is written by step {writer[tensor]} "
                    f"and step {index}; a tensor can appear in only one output_map"
                )
            writer[tensor] = index
    return writer


def _check_ensemble_inputs(
    inputs: list[str], writer: dict[str, int], read: set[str], where: str
) -> None:
    for name in inputs:
        if name in writer:
            raise ConfigError(
                f"{where}: ensemble input '{name}' is also written by step {writer[name]}"
            )
    for name in inputs:
        if name not in read:
            raise ConfigError(f"{where}: ensemble input '{name}' is not used by any step")


def _check_ensemble_outputs(
    config: ModelConfig, writer: dict[str, int], available: set[str], where: str
) -> None:
    for output in config.outputs:
        if output.name not in writer:
            raise ConfigError(
                f"{where}: ensemble output '{output.name}' is not written by any step"
            )
        if output.name not in available:
            raise ConfigError(
                f"{where}: ensemble output '{output.name}' is never written: "
                + _blocked_reason(config, writer[output.name], available, writer)
            )


def _check_unused_tensors(
    config: ModelConfig, writer: dict[str, int], read: set[str], where: str
) -> None:
    outputs = {t.name for t in config.outputs}
    for name, index in writer.items():
        if name not in outputs and name not in read:
            raise ConfigError(
                f"{where}: ensemble tensor '{name}' written by step {index} (model "
                f"'{config.ensemble_steps[index].model_name}') is unused; drop it from the "
                "step's output_map"
            )


def _step_model(
    step: EnsembleStep, step_config: Callable[[str, int | None], ModelConfig], label: str
) -> ModelConfig:
    try:
        return step_config(step.model_name, step_version(step))
    except (InferenceError, ConfigError) as exc:
        message = exc.message if isinstance(exc, InferenceError) else str(exc)
        raise ConfigError(f"{label}: the model is not available: {message}") from None


def _check_step_inputs(
    step: EnsembleStep,
    model: ModelConfig,
    shapes: dict[str, _TensorUse],
    label: str,
    where: str,
) -> None:
    for model_input, tensor in step.input_map.items():
        spec = model.input(model_input)
        if spec is None:
            raise ConfigError(
                f"{label}: input_map maps ensemble tensor '{tensor}' to '{model_input}', "
                f"which is not an input of the model (its inputs: "
                f"{', '.join(t.name for t in model.inputs)})"
            )
        _merge(shapes, tensor, _TensorUse.of(spec, model, f"model '{step.model_name}'"), where)
    for spec in model.inputs:
        if spec.name not in step.input_map and not spec.optional:
            raise ConfigError(
                f"{label}: the model's input '{spec.name}' is not mapped to any ensemble "
                "tensor in input_map"
            )


def _check_step_outputs(
    step: EnsembleStep,
    model: ModelConfig,
    shapes: dict[str, _TensorUse],
    label: str,
    where: str,
) -> None:
    for model_output, tensor in step.output_map.items():
        spec = model.output(model_output)
        if spec is None:
            raise ConfigError(
                f"{label}: output_map maps '{model_output}' to ensemble tensor '{tensor}', "
                f"but the model has no such output (its outputs: "
                f"{', '.join(t.name for t in model.outputs)})"
            )
        _merge(shapes, tensor, _TensorUse.of(spec, model, f"model '{step.model_name}'"), where)


def _flow(steps: tuple[EnsembleStep, ...], available: set[str]) -> set[str]:
    """Every tensor that can be computed from ``available`` by running steps."""
    available = set(available)
    pending = list(steps)
    progressed = True
    while pending and progressed:
        progressed = False
        for step in list(pending):
            if set(step.input_map.values()) <= available:
                available.update(step.output_map.values())
                pending.remove(step)
                progressed = True
    return available


def _blocked_reason(
    config: ModelConfig, index: int, available: set[str], writer: dict[str, int]
) -> str:
    """Why step ``index`` cannot run: the first tensor on its path that nothing provides."""
    seen: set[int] = set()
    while index not in seen:
        seen.add(index)
        step = config.ensemble_steps[index]
        missing = sorted(t for t in step.input_map.values() if t not in available)
        if not missing:
            break
        tensor = missing[0]
        if tensor not in writer:
            return (
                f"step {index} (model '{step.model_name}') reads ensemble tensor '{tensor}', "
                "which is neither an ensemble input nor written by any step"
            )
        index = writer[tensor]
    return f"steps {sorted(seen)} depend on each other in a cycle"


@dataclass(frozen=True)
class _TensorUse:
    """How one side (the ensemble or a step model) sees an ensemble tensor."""

    data_type: DataType | None
    dims: tuple[int, ...]
    full_dims: tuple[int, ...]
    owner: str

    @classmethod
    def of(cls, tensor: TensorConfig, model: ModelConfig, owner: str) -> _TensorUse:
        dims = tensor.reshape if tensor.reshape is not None else tensor.dims
        full = ((-1,) if model.batching else ()) + tuple(dims)
        return cls(tensor.data_type, tuple(dims), full, owner)


def _merge(shapes: dict[str, _TensorUse], name: str, use: _TensorUse, where: str) -> None:
    known = shapes.setdefault(name, use)
    if known is use:
        return
    if known.data_type is not use.data_type:
        raise ConfigError(
            f"{where}: ensemble tensor '{name}' has inconsistent data types: "
            f"{_type_name(known.data_type)} in {known.owner} but {_type_name(use.data_type)} "
            f"in {use.owner}"
        )
    # Shapes agree without the batch dimension, or with it when a non-batching model takes
    # the batch dimension as its first dimension.
    if not (_fits(known.dims, use.dims) or _fits(known.full_dims, use.full_dims)):
        raise ConfigError(
            f"{where}: ensemble tensor '{name}' has inconsistent shapes: "
            f"{list(known.full_dims)} in {known.owner} but {list(use.full_dims)} in {use.owner}"
        )


def _fits(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b, strict=True))


def _type_name(data_type: DataType | None) -> str:
    return data_type.config_name if data_type is not None else "TYPE_INVALID"
