"""The model configuration as frozen objects, parsed once at the edge and read everywhere."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from tidal.core.datatypes import DataType


@dataclass(frozen=True)
class TensorConfig:
    """An input or output of the model. ``dims`` excludes the batch dimension when
    the model batches (``max_batch_size > 0``); -1 marks a variable dimension."""

    name: str
    data_type: DataType | None
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None
    optional: bool = False
    label_filename: str = ""
    format: str = "FORMAT_NONE"
    is_shape_tensor: bool = False
    allow_ragged_batch: bool = False


@dataclass(frozen=True)
class VersionPolicy:
    """Which version folders to serve: ``latest`` N, ``all``, or ``specific`` versions."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to load, ascending, out of the ones found on disk."""
        found = sorted(set(available))
        if self.kind == "all":
            return found
        if self.kind == "specific":
            return [v for v in found if v in self.versions]
        return found[-self.num_versions :] if self.num_versions > 0 else []


@dataclass(frozen=True)
class InstanceGroup:
    """``count`` copies of the model on one kind of device."""

    name: str
    count: int = 1
    kind: str = "KIND_AUTO"
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class QueuePolicy:
    """How long a request may wait in the queue and how many may wait."""

    timeout_action: str = "REJECT"
    default_timeout_microseconds: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0


@dataclass(frozen=True)
class WarmupInput:
    """One input of a warmup sample: ``source`` is ``zero``, ``random`` or ``file`` (then
    ``file`` names a file in the model's ``warmup/`` folder holding the raw tensor bytes)."""

    name: str
    data_type: DataType
    dims: tuple[int, ...]
    source: str
    file: str = ""


@dataclass(frozen=True)
class ModelWarmup:
    """A warmup sample run on every instance before the model is ready."""

    name: str
    batch_size: int
    inputs: tuple[WarmupInput, ...]
    count: int = 0


@dataclass(frozen=True)
class DynamicBatching:
    """Triton's ``dynamic_batching`` settings."""

    preferred_batch_size: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 0
    preserve_ordering: bool = False
    priority_levels: int = 0
    default_priority_level: int = 0
    default_queue_policy: QueuePolicy = field(default_factory=QueuePolicy)
    priority_queue_policy: Mapping[int, QueuePolicy] = field(default_factory=dict)


@dataclass(frozen=True)
class EnsembleStep:
    """One step of an ensemble: run ``model_name`` (``model_version`` -1: its latest ready
    version) with ``input_map`` {model input: ensemble tensor} and publish ``output_map``
    {model output: ensemble tensor}."""

    model_name: str
    model_version: int = -1
    input_map: Mapping[str, str] = field(default_factory=dict)
    output_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """A model's configuration.

    ``source`` holds the serialized ``ModelConfig`` protobuf the object came from, so fields
    tidal does not model yet are passed through unchanged when the config is shown.
    """

    name: str
    platform: str = ""
    backend: str = ""
    max_batch_size: int = 0
    version_policy: VersionPolicy = field(default_factory=VersionPolicy)
    inputs: tuple[TensorConfig, ...] = ()
    outputs: tuple[TensorConfig, ...] = ()
    instance_groups: tuple[InstanceGroup, ...] = ()
    dynamic_batching: DynamicBatching | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    default_model_filename: str = ""
    ensemble_steps: tuple[EnsembleStep, ...] = ()
    model_warmup: tuple[ModelWarmup, ...] = ()
    source: bytes = b""

    def input(self, name: str) -> TensorConfig | None:
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> TensorConfig | None:
        return self._outputs_by_name.get(name)

    # Looked up for every request: built once per (immutable) config.
    @cached_property
    def _inputs_by_name(self) -> dict[str, TensorConfig]:
        return {t.name: t for t in self.inputs}

    @cached_property
    def _outputs_by_name(self) -> dict[str, TensorConfig]:
        return {t.name: t for t in self.outputs}

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    @property
    def is_ensemble(self) -> bool:
        return self.platform == "ensemble"

    @property
    def instance_count(self) -> int:
        return sum(group.count for group in self.instance_groups) or 1
