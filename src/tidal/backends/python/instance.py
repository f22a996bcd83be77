"""A Python-model instance: one batch at a time goes to its worker process and back.

The instance thread writes the inputs into shared memory, sends one ``exec`` message and reads
until the ``result`` arrives. BLS requests the model makes meanwhile are started on the server's
event loop; their completions wake this thread, which writes the replies to the worker.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import select
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any

from tidal.backends.base import ExecuteResult
from tidal.backends.python import bls
from tidal.backends.python.process import WorkerProcess
from tidal.backends.python.supervisor import Supervisor
from tidal.backends.python.worker.channel import (
    Arena,
    WireTensor,
    WorkerDied,
    decode_tensor,
    encode_tensor,
)
from tidal.config.model_config import ModelConfig
from tidal.core.datatypes import DataType
from tidal.core.errors import ErrorCode, InferenceError
from tidal.core.types import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput

# Request parameters that only steer the transport; the model never sees them.
_TRANSPORT_PARAMETERS = frozenset({"binary_data_output"})


class PythonModelInstance:
    """Runs batches on a supervised worker process."""

    def __init__(self, config: ModelConfig, version: int, supervisor: Supervisor) -> None:
        self.config = config
        self.version = version
        self.supervisor = supervisor
        self.instance_name = supervisor.spec.args.get("model_instance_name", config.name)
        self._all_outputs = [t.name for t in config.outputs]
        self._all_output_set = frozenset(self._all_outputs)
        self._generation = 0
        # (generation, call id, future) of finished BLS calls, filled on the event loop thread.
        self._finished: deque[tuple[int, int, concurrent.futures.Future]] = deque()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)

    def execute(self, batch: Sequence[InferRequest]) -> ExecuteResult:
        worker = self.supervisor.acquire()
        if isinstance(worker, InferenceError):
            return [worker] * len(batch)
        try:
            return self._run(worker, batch)
        except WorkerDied:
            error = InferenceError.internal(
                f"Failed to process the request(s) for model '{self.instance_name}', message: "
                f"the Python worker process {worker.exit_reason()} while executing them; "
                "it is being restarted"
            )
            return [error] * len(batch)
        finally:
            self.supervisor.release(worker)

    def close(self) -> None:
        self.supervisor.close()
        self._wake_reader.close()
        self._wake_writer.close()

    # -- one batch -----------------------------------------------------------------------

    def _run(self, worker: WorkerProcess, batch: Sequence[InferRequest]) -> ExecuteResult:
        self._generation += 1
        generation = self._generation
        self._finished.clear()  # calls abandoned by earlier batches
        worker.outbound.reset()
        wire = [self._wire_request(worker.outbound, request) for request in batch]
        worker.channel.send(("exec", generation, wire))
        pending = 0
        sock = worker.channel.sock
        while True:
            if pending:
                readable, _, _ = select.select([sock, self._wake_reader], [], [])
                if self._wake_reader in readable:
                    pending -= self._answer_finished(worker, generation)
                if sock not in readable:
                    continue
            message = worker.channel.recv()
            if message[0] == "result":
                return self._responses(worker, batch, message[2])
            if message[0] == "bls":
                pending += self._start_bls(worker, generation, message[1], message[2])

    def _wire_request(self, arena: Arena, request: InferRequest) -> tuple:
        requested = [o.name for o in request.outputs] if request.outputs else self._all_outputs
        parameters = {k: v for k, v in request.parameters.items() if k not in _TRANSPORT_PARAMETERS}
        correlation = parameters.get("sequence_id", 0)
        inputs = [encode_tensor(arena, t.name, t.datatype.value, t.data) for t in request.inputs]
        return (request.id or "", correlation, 0, parameters, requested, inputs)

    def _responses(
        self, worker: WorkerProcess, batch: Sequence[InferRequest], results: Any
    ) -> ExecuteResult:
        if isinstance(results, str):  # execute raised, or broke the contract
            return [InferenceError.internal(results)] * len(batch)
        answers: ExecuteResult = []
        for request, result in zip(batch, results, strict=True):
            if result[0] == "error":
                answers.append(InferenceError(_error_code(result[1]), result[2]))
                continue
            # As Triton: the response holds the requested outputs (all when none were named).
            wanted = {o.name for o in request.outputs} if request.outputs else self._all_output_set
            outputs = [
                _output(worker.inbound, tensor) for tensor in result[1] if tensor[0] in wanted
            ]
            answers.append(
                InferResponse(
                    model_name=request.model_name,
                    model_version=self.version,
                    outputs=outputs,
                    id=request.id,
                )
            )
        return answers

    # -- BLS -----------------------------------------------------------------------------

    def _start_bls(self, worker: WorkerProcess, generation: int, call: int, wire: tuple) -> int:
        """Start one BLS request; 1 if it now runs on the server, 0 if answered at once."""
        try:
            request, timeout_us = _bls_request(worker.inbound, wire)
            future = bls.submit(request, timeout_us)
        except Exception as exc:
            worker.channel.send(("bls_reply", call, _error_reply(exc)))
            return 0
        future.add_done_callback(lambda done: self._on_finished(generation, call, done))
        return 1

    def _on_finished(self, generation: int, call: int, future: concurrent.futures.Future) -> None:
        # Runs on the server's event loop: only queue it and wake the instance thread.
        self._finished.append((generation, call, future))
        # BlockingIOError: a wake-up is already pending; OSError: the instance is closed.
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_writer.send(b"\0")

    def _answer_finished(self, worker: WorkerProcess, generation: int) -> int:
        try:
            while self._wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        answered = 0
        while self._finished:
            done_generation, call, future = self._finished.popleft()
            if done_generation != generation:
                continue  # a call the model abandoned in an earlier execute
            answered += 1
            try:
                response = future.result()
            except Exception as exc:
                worker.channel.send(("bls_reply", call, _error_reply(exc)))
                continue
            tensors = [
                encode_tensor(worker.outbound, o.name, o.datatype.value, o.data)
                for o in response.outputs
            ]
            worker.channel.send(("bls_reply", call, ("ok", tensors)))
        return answered


def _bls_request(arena: Arena, wire: tuple) -> tuple[InferRequest, int]:
    model_name, version, request_id, requested, parameters, timeout_us, inputs = wire
    request = InferRequest(
        model_name=model_name,
        inputs=[
            InferInput(t[0], DataType.parse(t[1]), t[2], decode_tensor(arena, t, copy=True))
            for t in inputs
        ],
        model_version=None if version < 0 else version,
        id=request_id or None,
        outputs=[RequestedOutput(name) for name in requested] or None,
        parameters=dict(parameters),
    )
    return request, timeout_us


def _output(arena: Arena, tensor: WireTensor) -> InferOutput:
    name, datatype, shape, _ = tensor
    return InferOutput(name, DataType(datatype), shape, decode_tensor(arena, tensor, copy=True))


def _error_reply(exc: BaseException) -> tuple[str, str, str]:
    if isinstance(exc, InferenceError):
        return ("error", exc.code.value, exc.message)
    return ("error", ErrorCode.INTERNAL.value, f"{type(exc).__name__}: {exc}")


def _error_code(name: str) -> ErrorCode:
    try:
        return ErrorCode(name)
    except ValueError:
        return ErrorCode.INTERNAL
