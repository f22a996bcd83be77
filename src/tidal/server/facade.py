"""``InferenceServer``: the one facade the HTTP and gRPC frontends call."""

from __future__ import annotations

import logging
from pathlib import Path

from tidal import __version__
from tidal.config.model_config import ModelConfig
from tidal.config.settings import ServerSettings
from tidal.core.errors import InferenceError
from tidal.core.types import InferRequest, InferResponse
from tidal.repository.manager import ModelRepository
from tidal.repository.model_table import ModelRecord
from tidal.scheduling.statistics import ModelStatistics
from tidal.server.classification import classify
from tidal.server.metadata import ModelMetadata, ServerMetadata, TensorMetadata
from tidal.server.request_checks import check_request

logger = logging.getLogger(__name__)

# Advertise an extension only once it is complete: clients such as perf_analyzer act on it.
EXTENSIONS = ("classification", "model_configuration", "binary_tensor_data")


class InferenceServer:
    """Models, readiness, metadata and inference, whatever the transport."""

    def __init__(self, settings: ServerSettings, repositories: list[Path]) -> None:
        self.settings = settings
        self.repository = ModelRepository(repositories, auto_complete=settings.auto_complete_config)
        self._live = False
        self._stopping = False

    async def start(self) -> list[ModelRecord]:
        """Load the repositories; return the models that failed to load."""
        failed = await self.repository.load_all()
        for record in failed:
            logger.error("model '%s' failed to load: %s", record.name, record.reason)
        self._live = True
        return failed

    async def stop(self) -> None:
        """Refuse new requests, finish the accepted ones, unload every model."""
        self._stopping = True
        await self.repository.unload_all()
        self._live = False

    # -- health and metadata -------------------------------------------------------------

    def is_live(self) -> bool:
        return self._live

    def is_ready(self) -> bool:
        if not self._live or self._stopping:
            return False
        return self.repository.all_ready() if self.settings.strict_readiness else True

    def metadata(self) -> ServerMetadata:
        return ServerMetadata(name="tidal", version=__version__, extensions=EXTENSIONS)

    def model_ready(self, name: str, version: int | None = None) -> bool:
        return self.repository.is_ready(name, version)

    def model_config(self, name: str, version: int | None = None) -> ModelConfig:
        """The effective configuration; a named version must exist."""
        record = self.repository.record(name)
        if version is not None and version not in record.versions:
            raise InferenceError.not_found(
                f"Request for unknown model: '{name}' version {version} is not found"
            )
        if record.config is None:
            raise InferenceError.unavailable(
                f"model '{name}' has no usable configuration: {record.reason}"
            )
        return record.config

    def model_metadata(self, name: str, version: int | None = None) -> ModelMetadata:
        loaded = self.repository.resolve(name, version)
        config = loaded.config
        lead = (-1,) if config.batching else ()
        record = self.repository.record(name)
        return ModelMetadata(
            name=name,
            versions=tuple(str(v) for v in record.ready_versions()),
            platform=config.platform or config.backend,
            inputs=tuple(
                TensorMetadata(t.name, t.data_type.value if t.data_type else "", lead + t.dims)
                for t in config.inputs
            ),
            outputs=tuple(
                TensorMetadata(t.name, t.data_type.value if t.data_type else "", lead + t.dims)
                for t in config.outputs
            ),
        )

    def model_statistics(
        self, name: str = "", version: int | None = None
    ) -> list[tuple[str, int, ModelStatistics]]:
        """Statistics of every loaded version, of one model's, or of one version's."""
        if not name:
            records = self.repository.records()
        else:
            records = [self.repository.record(name)]
            if version is not None:
                self.repository.resolve(name, version)  # NOT_FOUND / UNAVAILABLE as infer
        return [
            (record.name, number, entry.loaded.stats)
            for record in records
            for number, entry in sorted(record.versions.items())
            if entry.loaded is not None and (version is None or number == version)
        ]

    # -- inference -----------------------------------------------------------------------

    async def infer(self, request: InferRequest) -> InferResponse:
        """Run one request; raise ``InferenceError`` with the reason when it fails."""
        if self._stopping:
            raise InferenceError.unavailable("the server is shutting down")
        loaded = self.repository.resolve(request.model_name, request.model_version)
        check_request(request, loaded.config)
        response = await loaded.scheduler.submit(request)
        if request.outputs:
            wanted = {o.name: o for o in request.outputs if o.classification > 0}
            if wanted:
                response.outputs = [
                    classify(
                        out,
                        wanted[out.name].classification,
                        loaded.labels.get(out.name, []),
                        loaded.config.batching,
                    )
                    if out.name in wanted
                    else out
                    for out in response.outputs
                ]
        return response
