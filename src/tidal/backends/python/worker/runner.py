"""The worker process's main loop: load ``model.py``, answer ``execute`` calls, run BLS calls.

The main thread reads a message, runs the model, writes the answer. A BLS ``exec()`` writes its
request and reads replies until its own arrives (model threads calling ``exec()`` at once take
turns reading and hand each other's replies over); ``async_exec()`` replies are read by the
worker's event loop (``add_reader``) while an ``async def execute`` awaits them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from . import pb_utils
from .channel import Arena, Channel, WireTensor, WorkerDied, decode_tensor, encode_tensor

MODULE_NAME = "triton_python_backend_utils"
# Frames of the worker itself, asyncio and importlib say nothing about the model's error.
_HIDDEN_FRAMES = (
    os.path.dirname(os.path.abspath(__file__)),
    os.path.dirname(os.path.abspath(asyncio.__file__)),
    "<frozen ",
)


PARENT_ENV = "TIDAL_WORKER_PARENT"  # the server's PID, set when it starts this worker
_ORPHAN_POLL_S = 0.5
_PENDING = object()  # a BLS call whose reply has not come yet


class ContractError(Exception):
    """The model broke the Python-backend contract (wrong return value, ...)."""


def main(argv: list[str]) -> int:
    """``SOCKET_FD P2C_FD P2C_SIZE C2P_FD C2P_SIZE``: the fds the server passed down."""
    # Ctrl-C and `docker stop` signal the whole process group: the server gets them too and
    # stops its workers in order (finalize runs); a worker whose server is gone exits by itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_when_orphaned(int(os.environ.get(PARENT_ENV) or os.getppid()))
    sock_fd, p2c_fd, p2c_size, c2p_fd, c2p_size = (int(a) for a in argv[:5])
    channel = Channel(socket.socket(fileno=sock_fd))
    worker = Worker(channel, Arena(p2c_fd, p2c_size), Arena(c2p_fd, c2p_size))
    sys.modules[MODULE_NAME] = pb_utils
    pb_utils._bls_call = worker.bls
    return worker.run()


def _exit_when_orphaned(parent: int) -> None:
    """Leave as soon as the server is gone, even one killed outright while ``execute`` is
    stuck in the model's code (the main thread then never reads the closed socket)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_ORPHAN_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


class Worker:
    """The model, its two arenas and its socket to the server."""

    def __init__(self, channel: Channel, inbound: Arena, outbound: Arena) -> None:
        self.channel = channel
        self.inbound = inbound  # written by the server: request inputs, BLS results
        self.outbound = outbound  # written here: outputs, BLS inputs
        self.model: Any = None
        self.instance_name = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_call = 0
        # call id -> _PENDING, the reply that came for it, or the asyncio future to resolve
        self._waiting: dict[int, Any] = {}
        self._sending = threading.Lock()
        self._replies = threading.Condition()
        self._reading = False  # a thread is reading the socket for BLS replies
        self._reader_on = False

    def run(self) -> int:
        try:
            return self._serve()
        except WorkerDied:
            return 0  # the server is gone: nobody is left to answer

    def _serve(self) -> int:
        kind, spec = self.channel.recv()
        if kind == "auto_complete":
            return self._auto_complete(spec)
        if not self._initialize(spec):
            return 1
        while True:
            message = self.channel.recv()
            if message[0] == "exec":
                self._execute(message[1], message[2])
            elif message[0] == "stop":
                self._finalize()
                return 0
            # Anything else is a BLS reply nobody waits for any more: drop it.

    # -- life cycle ----------------------------------------------------------------------

    def _auto_complete(self, spec: dict[str, Any]) -> int:
        try:
            module = _load_model_module(spec["model_path"])
            model_class = _model_class(module)
            method = getattr(model_class, "auto_complete_config", None)
            if method is None:
                self.channel.send(("config", None))
                return 0
            config = pb_utils.ModelConfig(spec["config"])
            completed = method(config)
            if not isinstance(completed, pb_utils.ModelConfig):
                raise ContractError(
                    "auto_complete_config must return the pb_utils.ModelConfig it was given, "
                    f"not {type(completed).__name__}"
                )
            self.channel.send(("config", completed.as_dict()))
        except Exception as exc:
            _log_traceback("auto_complete_config")
            self.channel.send(("failed", _describe(exc)))
            return 1
        return 0

    def _initialize(self, spec: dict[str, Any]) -> bool:
        self.instance_name = spec["args"]["model_instance_name"]
        pb_utils.Logger.prefix = self.instance_name
        try:
            module = _load_model_module(spec["model_path"])
            self.model = _model_class(module)()
            if not callable(getattr(self.model, "execute", None)):
                raise ContractError("TritonPythonModel has no execute method")
            initialize = getattr(self.model, "initialize", None)
            if initialize is not None:
                self._await(initialize(dict(spec["args"])))
        except BaseException as exc:
            _log_traceback("initialize")
            self.channel.send(("failed", _describe(exc)))
            return False
        self.channel.send(("ready", os.getpid()))
        return True

    def _finalize(self) -> None:
        finalize = getattr(self.model, "finalize", None)
        try:
            if finalize is not None:
                self._await(finalize())
        except BaseException:
            _log_traceback("finalize")
        self.channel.send(("stopped",))

    # -- execute -------------------------------------------------------------------------

    def _execute(self, generation: int, wire_requests: list[tuple]) -> None:
        self.outbound.reset()
        requests = [self._request(wire) for wire in wire_requests]
        try:
            responses = self._await(self.model.execute(requests))
            results: Any = self._results(requests, responses)
        except BaseException as exc:
            _log_traceback("execute")
            results = (
                f"Failed to process the request(s) for model '{self.instance_name}', "
                f"message: {_describe(exc)}"
            )
        finally:
            self._stop_reader()
        self.channel.send(("result", generation, results))

    def _request(self, wire: tuple) -> pb_utils.InferenceRequest:
        request_id, correlation_id, flags, parameters, requested, inputs = wire
        tensors = [self._tensor(t, copy=False) for t in inputs]
        return pb_utils.InferenceRequest._incoming(
            tensors, requested, request_id, correlation_id, flags, parameters
        )

    def _tensor(self, wire: WireTensor, *, copy: bool) -> pb_utils.Tensor:
        return pb_utils.Tensor(
            wire[0], decode_tensor(self.inbound, wire, copy=copy), datatype=wire[1]
        )

    def _results(self, requests: list, responses: Any) -> list[tuple]:
        if not isinstance(responses, list | tuple):
            raise ContractError(
                f"execute must return a list of InferenceResponse, got {type(responses).__name__}"
            )
        if len(responses) != len(requests):
            raise ContractError(
                "Number of InferenceResponse objects do not match the number of "
                f"InferenceRequest objects. InferenceRequest(s) size is:{len(requests)}, and "
                f"InferenceResponse(s) size is:{len(responses)}"
            )
        return [self._result(response) for response in responses]

    def _result(self, response: Any) -> tuple:
        if not isinstance(response, pb_utils.InferenceResponse):
            return ("error", "INTERNAL", f"expected an InferenceResponse, got {response!r}")
        error = response.error()
        if error is not None:
            code = pb_utils.ERROR_CODE_NAMES.get(error.code(), "INTERNAL")
            return ("error", code, error.message())
        return ("ok", self._wire_tensors(response.output_tensors()))

    def _wire_tensors(self, tensors: list[pb_utils.Tensor]) -> list[WireTensor]:
        return [encode_tensor(self.outbound, t.name(), t._datatype, t.as_numpy()) for t in tensors]

    # -- BLS -----------------------------------------------------------------------------

    def bls(self, request: pb_utils.InferenceRequest, wait: bool) -> Any:
        """Send ``request`` to the server; its response, or a future of it. Model code may
        call this from several threads at once."""
        future: asyncio.Future | None = None
        if not wait:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is None or loop is not self._loop:
                raise pb_utils.TritonModelException(
                    "async_exec() works inside `async def execute`; use exec() elsewhere"
                )
            future = loop.create_future()
        with self._sending:  # one writer at a time on the arena and the socket
            self._next_call += 1
            call = self._next_call
            wire = (
                request.model_name,
                request.model_version,
                request.request_id(),
                sorted(request.requested_output_names()),
                request._parameters,
                request.timeout,
                self._wire_tensors(request.inputs()),
            )
            with self._replies:
                self._waiting[call] = _PENDING if future is None else future
            self.channel.send(("bls", call, wire))
        if future is None:
            return self._wait(call)
        if not self._reader_on:
            future.get_loop().add_reader(self.channel.sock.fileno(), self._on_readable)
            self._reader_on = True
        return future

    def _wait(self, call: int) -> pb_utils.InferenceResponse:
        """Read replies (one reading thread at a time) until the one for ``call`` is in."""
        with self._replies:
            while self._waiting.get(call) is _PENDING:
                if self._reading:
                    self._replies.wait()
                    continue
                message = self._read_unlocked()
                self._deliver(message)
            return self._waiting.pop(call)

    def _read_unlocked(self) -> tuple:
        # Called holding ``_replies``; releases it while blocked on the socket.
        self._reading = True
        self._replies.release()
        try:
            return self.channel.recv()
        finally:
            self._replies.acquire()
            self._reading = False
            self._replies.notify_all()

    def _on_readable(self) -> None:
        with self._replies:
            if self._reading:
                return  # another thread is reading and will deliver
            try:
                message = self._read_unlocked()
            except WorkerDied:
                os._exit(0)  # the server is gone; nothing left to answer
            self._deliver(message)

    def _deliver(self, message: tuple) -> None:
        """Hand a BLS reply to whoever waits for it (called holding ``_replies``)."""
        if message[0] != "bls_reply":
            raise pb_utils.TritonModelException(f"unexpected message {message[0]!r} during BLS")
        _, call, reply = message
        waiter = self._waiting.get(call)
        if waiter is None:
            return  # abandoned by its caller
        if reply[0] == "ok":
            response = pb_utils.InferenceResponse([self._tensor(t, copy=True) for t in reply[1]])
        else:
            code = pb_utils.ERROR_CODES.get(reply[1], pb_utils.TritonError.INTERNAL)
            response = pb_utils.InferenceResponse(error=pb_utils.TritonError(reply[2], code))
        if isinstance(waiter, asyncio.Future):
            del self._waiting[call]
            waiter.get_loop().call_soon_threadsafe(_resolve, waiter, response)
        else:
            self._waiting[call] = response
            self._replies.notify_all()

    def _stop_reader(self) -> None:
        if self._reader_on and self._loop is not None:
            self._loop.remove_reader(self.channel.sock.fileno())
            self._reader_on = False
        with self._replies:  # futures nobody awaited; threads still waiting keep theirs
            for call in [c for c, w in self._waiting.items() if w is not _PENDING]:
                del self._waiting[call]

    # -- helpers -------------------------------------------------------------------------

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop

    def _await(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            return self._event_loop().run_until_complete(value)
        return value


def _resolve(future: asyncio.Future, response: pb_utils.InferenceResponse) -> None:
    if not future.done():
        future.set_result(response)


def _load_model_module(path: str) -> ModuleType:
    model_file = Path(path)
    # As Triton: the version folder and the model folder are importable by the model.
    for folder in (str(model_file.parent), str(model_file.parent.parent)):
        if folder not in sys.path:
            sys.path.append(folder)
    spec = importlib.util.spec_from_file_location("model", model_file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {model_file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["model"] = module
    spec.loader.exec_module(module)
    return module


def _model_class(module: ModuleType) -> type:
    model_class = getattr(module, "TritonPythonModel", None)
    if not isinstance(model_class, type):
        raise AttributeError(f"{module.__file__} defines no class TritonPythonModel")
    return model_class


def _describe(exc: BaseException) -> str:
    """``Type: message`` and the model's frames, innermost first, as Triton reports them."""
    if isinstance(exc, ContractError):
        return str(exc)
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_HIDDEN_FRAMES)
    ]
    where = "".join(f"  {f.filename}({f.lineno}): {f.name}\n" for f in reversed(frames))
    text = f"{type(exc).__name__}: {exc}"
    return f"{text}\n\nAt:\n{where}" if where else text


def _log_traceback(stage: str) -> None:
    sys.stderr.write(f"ERROR [{pb_utils.Logger.prefix}] {stage} failed:\n")
    traceback.print_exc(file=sys.stderr)
    sys.stderr.flush()
