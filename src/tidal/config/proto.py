"""Conversion between Triton's ``ModelConfig`` protobuf and tidal's frozen config."""

from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as pb

from tidal.config.model_config import (
    DynamicBatching,
    EnsembleStep,
    InstanceGroup,
    ModelConfig,
    ModelWarmup,
    QueuePolicy,
    TensorConfig,
    VersionPolicy,
    WarmupInput,
)
from tidal.core.datatypes import DataType

__all__ = ["from_proto", "to_proto"]


def from_proto(message: pb.ModelConfig) -> ModelConfig:
    """Freeze a protobuf config; raise ``ValueError`` naming a field that cannot be read."""
    return ModelConfig(
        name=message.name,
        platform=message.platform,
        backend=message.backend,
        max_batch_size=message.max_batch_size,
        version_policy=_version_policy(message),
        inputs=tuple(_tensor(t, "input") for t in message.input),
        outputs=tuple(_tensor(t, "output") for t in message.output),
        instance_groups=tuple(_instance_group(g) for g in message.instance_group),
        dynamic_batching=(
            _dynamic_batching(message.dynamic_batching)
            if message.HasField("dynamic_batching")
            else None
        ),
        parameters={k: v.string_value for k, v in message.parameters.items()},
        default_model_filename=message.default_model_filename,
        ensemble_steps=tuple(_ensemble_step(s) for s in message.ensemble_scheduling.step),
        model_warmup=tuple(_warmup(w) for w in message.model_warmup),
        source=message.SerializeToString(deterministic=True),
    )


def to_proto(config: ModelConfig) -> pb.ModelConfig:
    """The protobuf form of a config: the fields tidal models over the source's others."""
    message = pb.ModelConfig()
    message.ParseFromString(config.source)
    message.name = config.name
    message.platform = config.platform
    message.backend = config.backend
    message.max_batch_size = config.max_batch_size
    message.default_model_filename = config.default_model_filename
    _set_version_policy(message.version_policy, config.version_policy)
    del message.input[:]
    for tensor in config.inputs:
        _set_tensor(message.input.add(), tensor, is_input=True)
    del message.output[:]
    for tensor in config.outputs:
        _set_tensor(message.output.add(), tensor, is_input=False)
    del message.instance_group[:]
    for group in config.instance_groups:
        added = message.instance_group.add(name=group.name, count=group.count, gpus=group.gpus)
        added.kind = pb.ModelInstanceGroup.Kind.Value(group.kind)
    message.ClearField("dynamic_batching")
    if config.dynamic_batching is not None:
        _set_dynamic_batching(message.dynamic_batching, config.dynamic_batching)
    if config.ensemble_steps:  # ensemble_scheduling shares a oneof with dynamic_batching
        _set_ensemble_steps(message.ensemble_scheduling, config.ensemble_steps)
    message.parameters.clear()
    for key, value in config.parameters.items():
        message.parameters[key].string_value = value
    return message


def _tensor(message: pb.ModelInput | pb.ModelOutput, kind: str) -> TensorConfig:
    type_name = pb.DataType.Name(message.data_type)
    if type_name == "TYPE_INVALID":
        data_type = None  # left for auto-complete to fill, or rejected by validation
    else:
        try:
            data_type = DataType.from_config_name(type_name)
        except ValueError:
            raise ValueError(
                f"{kind} '{message.name}': unsupported data_type {type_name}"
            ) from None
    is_input = kind == "input"
    return TensorConfig(
        name=message.name,
        data_type=data_type,
        dims=tuple(message.dims),
        reshape=tuple(message.reshape.shape) if message.HasField("reshape") else None,
        optional=message.optional if is_input else False,
        label_filename="" if is_input else message.label_filename,
        format=pb.ModelInput.Format.Name(message.format) if is_input else "FORMAT_NONE",
        is_shape_tensor=message.is_shape_tensor,
        allow_ragged_batch=message.allow_ragged_batch if is_input else False,
    )


def _set_tensor(message, tensor: TensorConfig, *, is_input: bool) -> None:
    message.name = tensor.name
    if tensor.data_type is not None:
        message.data_type = pb.DataType.Value(tensor.data_type.config_name)
    message.dims.extend(tensor.dims)
    if tensor.reshape is not None:
        message.reshape.shape.extend(tensor.reshape)
    message.is_shape_tensor = tensor.is_shape_tensor
    if is_input:
        message.format = pb.ModelInput.Format.Value(tensor.format)
        message.optional = tensor.optional
        message.allow_ragged_batch = tensor.allow_ragged_batch
    else:
        message.label_filename = tensor.label_filename


def _warmup(message: pb.ModelWarmup) -> ModelWarmup:
    inputs = []
    for name in sorted(message.inputs):
        raw = message.inputs[name]
        type_name = pb.DataType.Name(raw.data_type)
        try:
            data_type = DataType.from_config_name(type_name)
        except ValueError:
            raise ValueError(
                f"model_warmup '{message.name}': input '{name}': unsupported data_type {type_name}"
            ) from None
        source = raw.WhichOneof("input_data_type")
        if source is None:
            raise ValueError(
                f"model_warmup '{message.name}': input '{name}' sets none of zero_data, "
                "random_data and input_data_file"
            )
        inputs.append(
            WarmupInput(
                name=name,
                data_type=data_type,
                dims=tuple(raw.dims),
                source={"zero_data": "zero", "random_data": "random"}.get(source, "file"),
                file=raw.input_data_file,
            )
        )
    return ModelWarmup(
        name=message.name,
        batch_size=message.batch_size,
        inputs=tuple(inputs),
        count=message.count,
    )


def _ensemble_step(message: pb.ModelEnsembling.Step) -> EnsembleStep:
    return EnsembleStep(
        model_name=message.model_name,
        model_version=message.model_version,
        input_map=dict(message.input_map),
        output_map=dict(message.output_map),
    )


def _set_ensemble_steps(message: pb.ModelEnsembling, steps: tuple[EnsembleStep, ...]) -> None:
    del message.step[:]
    for step in steps:
        added = message.step.add(model_name=step.model_name, model_version=step.model_version)
        added.input_map.update(step.input_map)
        added.output_map.update(step.output_map)


def _version_policy(message: pb.ModelConfig) -> VersionPolicy:
    if not message.HasField("version_policy"):
        return VersionPolicy()
    which = message.version_policy.WhichOneof("policy_choice")
    if which == "all":
        return VersionPolicy(kind="all")
    if which == "specific":
        return VersionPolicy(
            kind="specific", versions=tuple(message.version_policy.specific.versions)
        )
    latest = message.version_policy.latest.num_versions if which == "latest" else 1
    return VersionPolicy(kind="latest", num_versions=latest)


def _set_version_policy(message: pb.ModelVersionPolicy, policy: VersionPolicy) -> None:
    message.Clear()
    if policy.kind == "all":
        message.all.SetInParent()
    elif policy.kind == "specific":
        message.specific.versions.extend(policy.versions)
    else:
        message.latest.num_versions = policy.num_versions


def _instance_group(message: pb.ModelInstanceGroup) -> InstanceGroup:
    return InstanceGroup(
        name=message.name,
        count=message.count,
        kind=pb.ModelInstanceGroup.Kind.Name(message.kind),
        gpus=tuple(message.gpus),
    )


def _queue_policy(message: pb.ModelQueuePolicy) -> QueuePolicy:
    return QueuePolicy(
        timeout_action=pb.ModelQueuePolicy.TimeoutAction.Name(message.timeout_action),
        default_timeout_microseconds=message.default_timeout_microseconds,
        allow_timeout_override=message.allow_timeout_override,
        max_queue_size=message.max_queue_size,
    )


def _set_queue_policy(message: pb.ModelQueuePolicy, policy: QueuePolicy) -> None:
    message.timeout_action = pb.ModelQueuePolicy.TimeoutAction.Value(policy.timeout_action)
    message.default_timeout_microseconds = policy.default_timeout_microseconds
    message.allow_timeout_override = policy.allow_timeout_override
    message.max_queue_size = policy.max_queue_size


def _dynamic_batching(message: pb.ModelDynamicBatching) -> DynamicBatching:
    return DynamicBatching(
        preferred_batch_size=tuple(message.preferred_batch_size),
        max_queue_delay_microseconds=message.max_queue_delay_microseconds,
        preserve_ordering=message.preserve_ordering,
        priority_levels=message.priority_levels,
        default_priority_level=message.default_priority_level,
        default_queue_policy=_queue_policy(message.default_queue_policy),
        priority_queue_policy={
            level: _queue_policy(policy) for level, policy in message.priority_queue_policy.items()
        },
    )


def _set_dynamic_batching(message: pb.ModelDynamicBatching, batching: DynamicBatching) -> None:
    message.SetInParent()
    message.preferred_batch_size.extend(batching.preferred_batch_size)
    message.max_queue_delay_microseconds = batching.max_queue_delay_microseconds
    message.preserve_ordering = batching.preserve_ordering
    message.priority_levels = batching.priority_levels
    message.default_priority_level = batching.default_priority_level
    _set_queue_policy(message.default_queue_policy, batching.default_queue_policy)
    for level, policy in batching.priority_queue_policy.items():
        _set_queue_policy(message.priority_queue_policy[level], policy)
