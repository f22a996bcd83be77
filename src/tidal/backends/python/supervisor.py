"""Keeping one model instance's worker process alive: start it, watch it, restart it.

Triton leaves a Python model dead when its stub process crashes; here a thread waits on each
worker and starts a new one when it dies, so only the requests the dead worker was running fail.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tidal.backends.python.process import WorkerFailed, WorkerProcess
from tidal.core.errors import InferenceError

logger = logging.getLogger("tidal.backends.python")

# A worker killed by a signal while it loads (OOM killer, kill -9) is started again this often.
LOAD_ATTEMPTS = 3
RESTART_BACKOFF_S = (0.5, 30.0)  # first and longest wait between failed restarts


@dataclass(frozen=True)
class WorkerSpec:
    """Everything needed to start a worker for one instance, again and again."""

    python: str
    model_path: Path
    args: dict[str, str] = field(default_factory=dict)
    label: str = ""  # "model 'm' version 1 instance 'm_0_0'", for logs and errors


def start_worker(spec: WorkerSpec) -> WorkerProcess:
    """A worker that has run the model's ``initialize``; ``WorkerFailed`` if it cannot."""
    for attempt in range(1, LOAD_ATTEMPTS + 1):
        worker = WorkerProcess(spec.python)
        try:
            worker.greet("init", {"model_path": str(spec.model_path), "args": spec.args})
        except WorkerFailed as exc:
            worker.close()
            if exc.killed and attempt < LOAD_ATTEMPTS:
                logger.warning(
                    "%s: the worker process %s while loading; starting another worker",
                    spec.label,
                    exc.exit_reason,
                )
                continue
            raise
        logger.info("%s: worker process %d ready", spec.label, worker.pid)
        return worker
    raise AssertionError("unreachable")


class Supervisor:
    """Hands out the live worker of an instance and replaces it when it dies."""

    def __init__(self, spec: WorkerSpec, worker: WorkerProcess) -> None:
        self.spec = spec
        self._worker: WorkerProcess | None = worker
        self._busy: WorkerProcess | None = None
        self._unavailable = ""  # why no worker runs (its restart failed), or ""
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(
            target=self._watch, args=(worker,), name=f"tidal-watch-{worker.pid}", daemon=True
        )
        self._thread.start()

    @property
    def pid(self) -> int | None:
        worker = self._worker
        return worker.pid if worker is not None else None

    def acquire(self) -> WorkerProcess | InferenceError:
        """The live worker, reserved until ``release``; waits while one restarts."""
        with self._cond:
            while True:
                if self._closing:
                    return InferenceError.unavailable(f"{self.spec.label} is unloading")
                worker = self._worker
                if worker is not None and worker.alive():
                    self._busy = worker
                    return worker
                if worker is None and self._unavailable:
                    return InferenceError.unavailable(self._unavailable)
                self._cond.wait(0.05)  # the watcher is replacing it

    def release(self, worker: WorkerProcess) -> None:
        with self._cond:
            if self._busy is worker:
                self._busy = None
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the worker (its ``finalize`` runs) and the watching."""
        with self._cond:
            self._closing = True
            worker, self._worker = self._worker, None
            self._cond.notify_all()
        if worker is not None:
            worker.stop()

    def _watch(self, worker: WorkerProcess) -> None:
        while True:
            worker.proc.wait()
            with self._cond:
                if self._closing or self._worker is not worker:
                    return
                self._worker = None
                # The executing thread may still read the dead worker's socket: wait for it
                # before the socket's descriptor is released and reused.
                while self._busy is worker:
                    self._cond.wait()
            logger.error(
                "%s: the worker process %s; restarting it", self.spec.label, worker.exit_reason(0)
            )
            worker.close()
            replacement = self._restart()
            if replacement is None:
                return
            worker = replacement

    def _restart(self) -> WorkerProcess | None:
        delay, longest = RESTART_BACKOFF_S
        while True:
            try:
                worker = start_worker(self.spec)
            except (WorkerFailed, OSError) as exc:
                with self._cond:
                    if self._closing:
                        return None
                    self._unavailable = (
                        f"{self.spec.label}: its worker process died and could not be "
                        f"restarted: {exc}"
                    )
                    self._cond.notify_all()
                logger.error("%s; trying again in %.1fs", self._unavailable, delay)
                time.sleep(delay)
                delay = min(delay * 2, longest)
                continue
            with self._cond:
                if self._closing:
                    closing = True
                else:
                    closing = False
                    self._worker, self._unavailable = worker, ""
                    self._cond.notify_all()
            if closing:
                worker.stop()
                return None
            logger.info("%s: worker restarted as process %d", self.spec.label, worker.pid)
            return worker
