"""The two interfaces a backend implements: build instances, and run batches on them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tidal.config.model_config import ModelConfig
from tidal.core.errors import InferenceError
from tidal.core.types import InferRequest, InferResponse

ExecuteResult = list["InferResponse | InferenceError"]


class ModelInstance(Protocol):
    """One instance-group slot of a loaded model version. Plain synchronous code: it runs on
    an instance worker, never on the event loop.

    An instance that can tell its phases apart also has ``io_ns``: the nanoseconds its last
    ``execute`` spent preparing inputs and building outputs, as ``(input_ns, output_ns)``;
    the statistics count the rest as the model's run. Without it, all of it is.
    """

    def execute(self, batch: Sequence[InferRequest]) -> ExecuteResult:
        """Run the requests of one batch; one response or error per request, in order."""
        ...

    def close(self) -> None:
        """Release what the instance holds (sessions, processes, memory)."""
        ...


class Backend(Protocol):
    """A kind of model (ONNX Runtime, Python, TorchScript, ...)."""

    name: str

    def auto_complete(self, config: ModelConfig, version_dir: Path) -> ModelConfig:
        """Fill what the configuration leaves out from the model file in ``version_dir``."""
        ...

    def create_instance(
        self, config: ModelConfig, version_dir: Path, device: str, version: int
    ) -> ModelInstance:
        """Load one instance of a model version on ``device`` (``"cpu"`` or ``"gpu:N"``).

        Raise ``ConfigError`` when the configuration does not fit the model file.
        """
        ...
