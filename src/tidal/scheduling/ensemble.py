"""The ensemble scheduler: runs an ensemble's steps as a data-flow graph, in-process.

Each step is an ordinary request to its model, sent through ``run_step`` (the facade's way
to resolve, check and submit a request), so a step lands in that model's own scheduler and
batches with concurrent requests from other ensembles or clients. Steps whose inputs are
ready run concurrently; the first step that fails fails the request and cancels the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tidal.config.ensemble import step_version
from tidal.config.model_config import EnsembleStep, ModelConfig
from tidal.core.errors import InferenceError
from tidal.core.types import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput
from tidal.scheduling.admission import Admission
from tidal.scheduling.statistics import (
    BACKEND,
    CANCELED,
    CURRENT_TIMING,
    ModelStatistics,
    RequestTiming,
)

__all__ = ["EnsembleScheduler", "StepRunner"]

StepRunner = Callable[[InferRequest], Awaitable[InferResponse]]


class EnsembleScheduler:
    """Takes requests for one ensemble version and answers each from its steps' results."""

    def __init__(
        self, config: ModelConfig, version: int, stats: ModelStatistics, run_step: StepRunner
    ) -> None:
        self._config = config
        self._version = version
        self._stats = stats
        self._run_step = run_step
        self._output_names = [t.name for t in config.outputs]
        self._admission = Admission(config.name, stats)

    @property
    def inflight(self) -> int:
        return self._admission.count

    async def submit(self, request: InferRequest) -> InferResponse:
        stats = self._stats
        self._admission.enter()
        arrived = time.perf_counter_ns()
        steps_timing = RequestTiming()
        try:
            tensors = await self._run_graph(request, steps_timing)
            response = self._response(request, tensors)
        except asyncio.CancelledError:
            stats.record_failure(CANCELED, time.perf_counter_ns() - arrived)
            raise
        except InferenceError as exc:
            stats.record_failure(BACKEND, time.perf_counter_ns() - arrived)
            # Triton's wording, so the failing step's message reads in the ensemble's context.
            raise InferenceError(
                exc.code, f"in ensemble '{self._config.name}', {exc.message}"
            ) from None
        finally:
            self._admission.leave()
        # The ensemble's queue and compute times are its steps' sums, as in Triton.
        total_ns = time.perf_counter_ns() - arrived
        stats.record_success(total_ns, steps_timing.queue_ns, steps_timing.phases())
        batched = self._config.batching and request.inputs
        stats.inference_count += request.inputs[0].shape[0] if batched else 1
        stats.execution_count += 1
        timing = CURRENT_TIMING.get()
        if timing is not None:
            timing.queue_ns = steps_timing.queue_ns
            timing.compute_input_ns = steps_timing.compute_input_ns
            timing.compute_infer_ns = steps_timing.compute_infer_ns
            timing.compute_output_ns = steps_timing.compute_output_ns
        return response

    async def stop(self) -> None:
        """Refuse new requests and wait for the accepted ones; there are no instances."""
        await self._admission.close()

    async def _run_graph(
        self, request: InferRequest, timing: RequestTiming
    ) -> dict[str, InferInput]:
        tensors = {tensor.name: tensor for tensor in request.inputs}
        # Optional ensemble inputs the client left out: steps run without them.
        absent = {t.name for t in self._config.inputs if t.name not in tensors}
        pending = list(self._config.ensemble_steps)
        running: dict[asyncio.Task, EnsembleStep] = {}
        try:
            while pending or running:
                for step in list(pending):
                    if all(t in tensors or t in absent for t in step.input_map.values()):
                        pending.remove(step)
                        task = asyncio.create_task(self._run_one(step, request, tensors, timing))
                        task.add_done_callback(_consume)
                        running[task] = step
                if not running:
                    names = ", ".join(f"'{s.model_name}'" for s in pending)
                    raise InferenceError.invalid(
                        f"steps {names} cannot run: an input they need was not provided"
                    )
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    del running[task]
                    tensors.update(task.result())
        finally:
            for task in running:
                task.cancel()
        return tensors

    async def _run_one(
        self,
        step: EnsembleStep,
        request: InferRequest,
        tensors: dict[str, InferInput],
        timing: RequestTiming,
    ) -> dict[str, InferInput]:
        inputs = [
            InferInput(name, tensors[t].datatype, tensors[t].shape, tensors[t].data)
            for name, t in step.input_map.items()
            if t in tensors
        ]
        step_request = InferRequest(
            model_name=step.model_name,
            inputs=inputs,
            model_version=step_version(step),
            id=request.id,
            outputs=[RequestedOutput(name) for name in step.output_map],
            # Triton passes the ensemble request's parameters (priority, timeout, custom
            # ones) on to every step.
            parameters=dict(request.parameters),
        )
        # The step's scheduler fills in its own timing (this task runs in a copied context).
        step_timing = RequestTiming()
        CURRENT_TIMING.set(step_timing)
        response = await self._run_step(step_request)
        timing.queue_ns += step_timing.queue_ns
        timing.compute_input_ns += step_timing.compute_input_ns
        timing.compute_infer_ns += step_timing.compute_infer_ns
        timing.compute_output_ns += step_timing.compute_output_ns
        produced = {output.name: output for output in response.outputs}
        results = {}
        for name, tensor in step.output_map.items():
            output = produced.get(name)
            if output is None:
                raise InferenceError.internal(
                    f"model '{step.model_name}' did not return output '{name}'"
                )
            results[tensor] = InferInput(tensor, output.datatype, output.shape, output.data)
        return results

    def _response(self, request: InferRequest, tensors: dict[str, InferInput]) -> InferResponse:
        names = [o.name for o in request.outputs] if request.outputs else self._output_names
        outputs = []
        for name in names:
            tensor = tensors[name]
            outputs.append(InferOutput(name, tensor.datatype, tensor.shape, tensor.data))
        return InferResponse(
            model_name=self._config.name,
            model_version=self._version,
            outputs=outputs,
            id=request.id,
        )


def _consume(task: asyncio.Task) -> None:
    """Mark a step's failure as seen: a step cancelled after a sibling failed must not log
    'exception never retrieved'."""
    if not task.cancelled():
        task.exception()
