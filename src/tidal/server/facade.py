"""``InferenceServer``: the one facade the HTTP and gRPC frontends call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from tidal import __version__
from tidal.backends.python import bls as python_bls
from tidal.config.model_config import ModelConfig
from tidal.config.settings import ServerSettings
from tidal.core.errors import ErrorCode, InferenceError
from tidal.core.metadata import ModelMetadata, RepositoryEntry, ServerMetadata, TensorMetadata
from tidal.core.types import InferRequest, InferResponse
from tidal.repository.control import ModelControl
from tidal.repository.manager import UNLOADED, ModelRepository
from tidal.repository.model_table import LoadedVersion, ModelRecord
from tidal.scheduling.statistics import (
    CURRENT_TIMING,
    OTHER,
    ModelStatistics,
    RequestTiming,
    set_latency_buckets,
)
from tidal.server.classification import classify
from tidal.server.repository_index import repository_index
from tidal.server.request_checks import check_request

logger = logging.getLogger(__name__)

# Advertise an extension only once it is complete: clients such as perf_analyzer act on it.
EXTENSIONS = (
    "classification",
    "model_configuration",
    "binary_tensor_data",
    "statistics",
    "model_repository",
    "model_repository(unload_dependents)",
)


class InferenceServer:
    """Models, readiness, metadata and inference, whatever the transport."""

    def __init__(self, settings: ServerSettings, repositories: list[Path]) -> None:
        self.settings = settings
        # Before any model loads: each version's statistics take the bounds in force then.
        set_latency_buckets(settings.latency_buckets if settings.allow_metrics else ())
        self.repository = ModelRepository(
            repositories,
            auto_complete=settings.auto_complete_config,
            step_runner=self._run_step,
            allow_symlinks_out=settings.allow_symlinks_out_of_model_dir,
        )
        self.control = ModelControl(self.repository, settings)
        # Live from the start: the frontends answer health checks while models load.
        self._live = True
        self._started = False  # the start-up models have been loaded
        self._stopping = False
        self._withdrawn = False  # readiness false for a shutdown delay, still serving
        self._aborting = False  # the exit timeout passed: requests left are cancelled
        self._inflight: set[asyncio.Task] = set()  # tasks inside infer()
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self._idle: asyncio.Event | None = None

    async def start(self) -> list[ModelRecord]:
        """Load the start-up models (by the model control mode); return those that failed."""
        # Python models' BLS requests run like ensemble steps (still accepted while draining).
        self._loop = asyncio.get_running_loop()
        python_bls.connect(self._run_step, self._loop)
        failed = await self.control.start()
        for record in failed:
            logger.error("model '%s' failed to load: %s", record.name, record.reason)
        self._started = True
        return failed

    async def stop(self) -> None:
        """Refuse new requests, finish the accepted ones, unload every model."""
        self._stopping = True
        await self.control.stop()
        await self.repository.unload_all()
        python_bls.disconnect(self._run_step)
        self._live = False

    # -- shutting down -------------------------------------------------------------------

    def withdraw(self) -> None:
        """Turn readiness false but go on serving: the start of a shutdown delay, while load
        balancers take this server out of rotation (--shutdown-delay-secs)."""
        self._withdrawn = True

    def begin_shutdown(self) -> None:
        """Turn readiness false and refuse new requests with UNAVAILABLE, at once."""
        self._stopping = True

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the accepted requests; True if none is left."""
        if self._inflight:
            self._idle = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        return not self._inflight

    def cancel_inflight(self) -> int:
        """Cancel every request still running; each is answered with UNAVAILABLE."""
        self._aborting = True
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        return len(tasks)

    # -- health and metadata -------------------------------------------------------------

    def is_live(self) -> bool:
        return self._live

    def is_ready(self) -> bool:
        if not self._started or not self._live or self._stopping or self._withdrawn:
            return False
        return self.repository.all_ready() if self.settings.strict_readiness else True

    def metadata(self) -> ServerMetadata:
        return ServerMetadata(name="tidal", version=__version__, extensions=EXTENSIONS)

    def model_ready(self, name: str, version: int | None = None) -> bool:
        return self.repository.is_ready(name, version)

    def model_config(self, name: str, version: int | None = None) -> ModelConfig:
        """The configuration of the version that would serve (as Triton: an unloaded model
        has none to show)."""
        return self.resolve(name, version).config

    def resolve(self, name: str, version: int | None = None) -> LoadedVersion:
        """The version that serves ``name`` (the highest ready one when ``version`` is None),
        refused as Triton refuses: NOT_FOUND for an unknown model or version and for a model
        with no ready version (unloaded, failed or still loading); UNAVAILABLE for a named
        version that exists but is not ready."""
        try:
            return self.repository.resolve(name, version)
        except InferenceError as exc:
            if version is not None or exc.code is not ErrorCode.UNAVAILABLE:
                raise
            record = self.repository.get(name)
            reason = record.reason if record is not None else ""
            message = f"Request for unknown model: '{name}' has no available versions"
            if reason and reason != UNLOADED:  # tidal's addition: why it has none
                message = f"{message}: {reason}"
            raise InferenceError.not_found(message) from None

    def model_metadata(self, name: str, version: int | None = None) -> ModelMetadata:
        loaded = self.resolve(name, version)
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
        """Statistics of every loaded version, of one model's, or of one version's; as in
        Triton, a model (or version) with none loaded is INVALID_ARG, "not available"."""
        if not name:
            records = self.repository.records()
        else:
            record = self.repository.get(name)
            records = [] if record is None else [record]
        entries = [
            (record.name, number, entry.loaded.stats)
            for record in records
            for number, entry in sorted(record.versions.items())
            if entry.loaded is not None
        ]
        if name and not entries:
            raise InferenceError.invalid(f"requested model '{name}' is not available")
        if version is None:
            return entries
        entries = [entry for entry in entries if entry[1] == version]
        if not entries:
            raise InferenceError.invalid(
                f"requested model version is not available for model '{name}'"
            )
        return entries

    # -- model repository ----------------------------------------------------------------

    async def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """Every model folder and loaded model, one entry per version (Triton's index)."""
        return repository_index(self.repository, ready_only)

    async def load_model(
        self, name: str, *, config: str | None = None, files: Mapping[str, bytes] | None = None
    ) -> None:
        """Load or reload a model (explicit mode); ``config`` is a JSON model configuration
        and ``files`` maps ``file:<version>/<name>`` to contents, replacing the folder."""
        self._check_control()
        await self.control.load(name, config=config, files=files)

    async def unload_model(self, name: str, *, unload_dependents: bool = False) -> None:
        """Unload a model (explicit mode) once its accepted requests are answered."""
        self._check_control()
        await self.control.unload(name, unload_dependents=unload_dependents)

    def _check_control(self) -> None:
        if self._stopping:
            raise InferenceError.unavailable("the server is shutting down")
        if not self._started:
            raise InferenceError.unavailable("the server is still loading its start-up models")

    # -- inference -----------------------------------------------------------------------

    async def _run_step(self, request: InferRequest) -> InferResponse:
        """One step of an ensemble: checked and scheduled like a client's request, but still
        accepted while the server drains the ensemble requests it has begun."""
        loaded = self.resolve(request.model_name, request.model_version)
        check_request(request, loaded.config)
        return await loaded.scheduler.submit(request)

    async def infer(
        self, request: InferRequest, timing: RequestTiming | None = None
    ) -> InferResponse:
        """Run one request; raise ``InferenceError`` with the reason when it fails.

        ``timing``, when given, receives the request's queue and compute time.
        """
        if self._stopping:
            raise InferenceError.unavailable("the server is shutting down")
        # Counted until answered, so a shutdown can wait for it (and cancel it at the end).
        # With its loop given, current_task skips get_running_loop (a getpid system call).
        task = asyncio.current_task(self._loop)
        assert task is not None
        self._inflight.add(task)
        try:
            return await self._infer(request, timing)
        except asyncio.CancelledError:
            if not self._aborting:
                raise  # the client went away
            if hasattr(task, "uncancel"):  # Python 3.11+: this task goes on to answer
                task.uncancel()
            raise InferenceError.unavailable(
                "the server is shutting down: the request did not finish within "
                f"--exit-timeout-secs ({self.settings.exit_timeout_secs} s) and was cancelled"
            ) from None
        finally:
            self._inflight.discard(task)
            if not self._inflight and self._idle is not None:
                self._idle.set()

    async def _infer(self, request: InferRequest, timing: RequestTiming | None) -> InferResponse:
        loaded = self.resolve(request.model_name, request.model_version)
        arrived = time.perf_counter_ns()
        try:
            check_request(request, loaded.config)
        except InferenceError:  # as in Triton, a request that does not fit is a failure
            loaded.stats.record_failure(OTHER, time.perf_counter_ns() - arrived)
            raise
        if timing is None:
            response = await loaded.scheduler.submit(request)
        else:
            token = CURRENT_TIMING.set(timing)  # the scheduler fills it in
            try:
                response = await loaded.scheduler.submit(request)
            finally:
                CURRENT_TIMING.reset(token)
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
