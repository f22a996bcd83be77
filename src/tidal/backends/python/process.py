"""Starting, greeting and stopping one Python-model worker process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from tidal.backends.python.worker.channel import Arena, Channel, WorkerDied, shared_memory_fd

BOOTSTRAP = Path(__file__).resolve().parent / "worker" / "bootstrap.py"
# Virtual size of each direction's shared memory; pages cost memory only once touched, and a
# tensor that does not fit travels inside the message instead.
ARENA_BYTES = 64 * 1024 * 1024
STOP_TIMEOUT_S = 10.0


class WorkerFailed(Exception):
    """The worker could not load the model; the message says why."""

    def __init__(self, message: str, *, killed: bool = False, exit_reason: str = "") -> None:
        super().__init__(message)
        self.killed = killed  # died of a signal rather than of the model's own error
        self.exit_reason = exit_reason  # "(pid N) was killed by signal 9 (SIGKILL)", or ""


class WorkerProcess:
    """A worker process, its control socket and its two shared-memory arenas."""

    def __init__(self, python: str, arena_bytes: int = ARENA_BYTES) -> None:
        ours, theirs = socket.socketpair()
        to_worker = shared_memory_fd(arena_bytes)
        from_worker = shared_memory_fd(arena_bytes)
        fds = (theirs.fileno(), to_worker, from_worker)
        command = [python, str(BOOTSTRAP), str(fds[0]), str(to_worker), str(arena_bytes)]
        command += [str(from_worker), str(arena_bytes)]
        # The worker leaves by itself once this process is gone (see runner.PARENT_ENV).
        env = dict(os.environ, PYTHONUNBUFFERED="1", TIDAL_WORKER_PARENT=str(os.getpid()))
        try:
            self.proc = subprocess.Popen(command, pass_fds=fds, env=env, stdin=subprocess.DEVNULL)
            self.outbound = Arena(to_worker, arena_bytes)  # we write, the worker reads
            self.inbound = Arena(from_worker, arena_bytes)  # the worker writes, we read
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            os.close(to_worker)
            os.close(from_worker)
        self.channel = Channel(ours)
        self.pid = self.proc.pid

    def greet(self, kind: str, spec: dict[str, Any]) -> tuple:
        """Send the first message and return the worker's answer; ``WorkerFailed`` if it
        reports a failure or dies first."""
        try:
            self.channel.send((kind, spec))
            reply = self.channel.recv()
            while reply[0] == "bls":  # as in Triton, BLS works inside execute only
                refusal = ("error", "UNSUPPORTED", f"BLS is not available during {kind}")
                self.channel.send(("bls_reply", reply[1], refusal))
                reply = self.channel.recv()
        except WorkerDied:
            reason = self.exit_reason()
            killed = self.proc.returncode is not None and self.proc.returncode < 0
            raise WorkerFailed(
                f"the worker process {reason} before it was ready (its own error, if any, is "
                "in the server's log)",
                killed=killed,
                exit_reason=reason,
            ) from None
        if reply[0] == "failed":
            self.close()
            raise WorkerFailed(reply[1])
        return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_reason(self, wait_s: float = 5.0) -> str:
        """How the process ended, e.g. ``"(pid 12) was killed by signal 9 (SIGKILL)"``."""
        try:
            code = self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            return f"(pid {self.pid}) stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "unknown signal"
            return f"(pid {self.pid}) was killed by signal {-code} ({name})"
        return f"(pid {self.pid}) exited with code {code}"

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ask the worker to run ``finalize`` and exit; kill it if it does not in time."""
        if self.alive():
            try:
                self.channel.sock.settimeout(timeout)
                self.channel.send(("stop",))
                while self.channel.recv()[0] != "stopped":
                    pass  # a late BLS reply request nobody will answer
            except (WorkerDied, TimeoutError):
                pass
        self.close(timeout)

    def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Make sure the process is gone and release the socket and shared memory."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.channel.close()
        self.outbound.close()
        self.inbound.close()
