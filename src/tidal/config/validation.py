"""Checks on a complete model configuration, independent of any backend."""

from __future__ import annotations

from dataclasses import replace

from tritonclient.grpc import model_config_pb2 as pb

from tidal.config.ensemble import check_ensemble_config
from tidal.config.model_config import InstanceGroup, ModelConfig, TensorConfig
from tidal.config.pbtxt import ConfigError

_INSTANCE_KINDS = {"KIND_AUTO", "KIND_CPU", "KIND_GPU", "KIND_MODEL"}


def normalize_config(config: ModelConfig) -> ModelConfig:
    """Fill the defaults Triton shows in an effective config (name, one instance group)."""
    if config.is_ensemble:
        return config  # an ensemble has no instances of its own
    groups = config.instance_groups or (InstanceGroup(name="", count=1, kind="KIND_CPU"),)
    groups = tuple(
        replace(
            group,
            name=group.name or f"{config.name}_{index}",
            count=group.count or 1,  # Triton's default when a group leaves count out
            kind="KIND_CPU" if group.kind == "KIND_AUTO" else group.kind,
        )
        for index, group in enumerate(groups)
    )
    return replace(config, instance_groups=groups)


def validate_config(config: ModelConfig) -> None:
    """Raise ``ConfigError`` naming the model and field for an unusable configuration."""
    where = f"model '{config.name}'"
    if config.max_batch_size < 0:
        raise ConfigError(f"{where}: max_batch_size must be >= 0, got {config.max_batch_size}")
    if not config.inputs:
        raise ConfigError(f"{where}: the configuration has no inputs")
    if not config.outputs:
        raise ConfigError(f"{where}: the configuration has no outputs")
    for kind, tensors in (("input", config.inputs), ("output", config.outputs)):
        _validate_tensors(where, kind, tensors)
    _validate_instance_groups(where, config)
    policy = config.version_policy
    if policy.kind == "latest" and policy.num_versions < 1:
        raise ConfigError(f"{where}: version_policy latest num_versions must be >= 1")
    _validate_batching(where, config)
    _refuse_sequence_batching(where, config)
    if config.is_ensemble or config.ensemble_steps:
        check_ensemble_config(config)


def _refuse_sequence_batching(where: str, config: ModelConfig) -> None:
    # A stateful model served without its sequence scheduler would load and answer each
    # request as if it began a new sequence: wrong answers, so it does not load at all.
    if config.source and pb.ModelConfig.FromString(config.source).HasField("sequence_batching"):
        raise ConfigError(
            f"{where}: sequence_batching is not supported by this server "
            "(the model keeps state across a sequence); remove the block or serve the model "
            "with a server that has a sequence batcher"
        )


def _validate_tensors(where: str, kind: str, tensors: tuple[TensorConfig, ...]) -> None:
    names = [t.name for t in tensors]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{where}: duplicate {kind} name(s) {duplicates}")
    for tensor in tensors:
        _validate_tensor(where, kind, tensor)


def _validate_instance_groups(where: str, config: ModelConfig) -> None:
    for group in config.instance_groups:
        if group.count < 1:
            raise ConfigError(
                f"{where}: instance_group '{group.name}' count must be >= 1, got {group.count}"
            )
        if group.kind not in _INSTANCE_KINDS:
            raise ConfigError(f"{where}: instance_group '{group.name}' has unknown kind")


def _validate_tensor(where: str, kind: str, tensor: TensorConfig) -> None:
    label = f"{where}: {kind} '{tensor.name}'"
    if not tensor.name:
        raise ConfigError(f"{where}: an {kind} has no name")
    if tensor.data_type is None:
        raise ConfigError(f"{label}: data_type is not set")
    if not tensor.dims and tensor.reshape is None:
        raise ConfigError(f"{label}: dims are not set")
    if any(d < -1 or d == 0 for d in tensor.dims):
        raise ConfigError(f"{label}: dims {list(tensor.dims)} must be positive or -1")
    if tensor.reshape is not None:
        fixed = all(d > 0 for d in tensor.dims) and all(d > 0 for d in tensor.reshape)
        if fixed and _product(tensor.dims) != _product(tensor.reshape):
            raise ConfigError(
                f"{label}: reshape {list(tensor.reshape)} has a different element count "
                f"than dims {list(tensor.dims)}"
            )


def _validate_batching(where: str, config: ModelConfig) -> None:
    batching = config.dynamic_batching
    if batching is None:
        return
    for size in batching.preferred_batch_size:
        if size < 1 or (config.max_batch_size and size > config.max_batch_size):
            raise ConfigError(
                f"{where}: dynamic_batching preferred_batch_size {size} must be between 1 "
                f"and max_batch_size {config.max_batch_size}"
            )
    if batching.priority_levels and not (
        1 <= batching.default_priority_level <= batching.priority_levels
    ):
        raise ConfigError(
            f"{where}: dynamic_batching default_priority_level must be between 1 and "
            f"priority_levels {batching.priority_levels}"
        )


def _product(dims: tuple[int, ...]) -> int:
    result = 1
    for d in dims:
        result *= d
    return result
