"""The ``tidal score`` process: one listening socket, N workers on it, an optional server.

The supervisor binds the port once and hands the listening socket to every worker (inherited
file descriptor), so the kernel spreads connections over them and a worker that dies loses only
the requests it was answering: connections still queued are accepted by the others. A dead
worker is replaced. With a model repository, ``tidal serve`` runs as a child first and the
workers start once its ``/v2/health/ready`` answers; if it dies, the service exits non-zero.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence

from tidal.core.child_process import die_with_parent, end_children
from tidal.core.sockets import bind_socket
from tidal.scoring.custody import LINGER_S, CustodyKeeper, linger
from tidal.scoring.settings import ScoreSettings
from tidal.scoring.worker import EXIT_INIT_FAILED, SHUTDOWN_GRACE_S

__all__ = ["Supervisor"]

logger = logging.getLogger("tidal.scoring")

EXIT_SERVER_DIED = 1
_POLL_S = 0.1
# How often the workers' connection handovers are read (custody.py): often enough that the
# queue of them (SO_SNDBUF) never fills, seldom enough to cost nothing when idle.
_CUSTODY_TICK_S = 0.02
_READY_POLL_S = 0.2
_KILL_GRACE_S = 3.0  # beyond a worker's own shutdown grace, before SIGKILL
_SERVER_STOP_TIMEOUT_S = 15.0
_RESTART_WINDOW_S = 10.0  # respawns faster than this, many times over, mean a broken script
_RESTART_LIMIT = 20
_SERVER_STARTED = re.compile(r"Started HTTPService at ([0-9a-fA-F.:\[\]]+):(\d+)")
INFERENCE_URL_ENV = "INFERENCE_SERVER_URL"


class _Worker:
    def __init__(
        self, proc: subprocess.Popen, ready_fd: int, custody: CustodyKeeper | None
    ) -> None:
        self.proc = proc
        self.ready_fd = ready_fd
        self.ready = False
        self.started = time.monotonic()
        self.custody = custody  # its connections, answered if it dies mid-request

    def ended(self) -> list[tuple[socket.socket, float]]:
        """It has exited: answer its clients; the connections left to linger."""
        if self.custody is None:
            return []
        lingering = self.custody.worker_ended(_exit_reason(self.proc))
        self.custody.close()
        self.custody = None
        return lingering


class Supervisor:
    """Runs until SIGINT/SIGTERM (exit 0), or until it cannot go on (exit non-zero)."""

    def __init__(self, settings: ScoreSettings) -> None:
        self.settings = settings
        self.workers: list[_Worker] = []
        self.server: subprocess.Popen | None = None
        self.server_url = ""
        self._stop = threading.Event()
        self._restarts: list[float] = []
        self._sock: socket.socket | None = None
        self._env = dict(os.environ)
        self._lingering: list[tuple[socket.socket, float]] = []

    # -- life cycle ---------------------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self._stop.set())
        _raise_open_files_limit()  # it holds a copy of every open client connection
        try:
            return self._run()
        finally:
            self._shutdown()

    def _run(self) -> int:
        settings = self.settings
        if settings.model_repository:
            code = self._start_server()
            if code is not None:
                return code
        try:
            if settings.listen_fd >= 0:  # a deployment's host binds the public port once
                self._sock = socket.socket(fileno=settings.listen_fd)
                self._sock.set_inheritable(True)
            else:
                self._sock = bind_socket(settings.host, settings.port, inheritable=True)
        except OSError as exc:
            logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
            return 1
        host, port = self._sock.getsockname()[:2]
        for _ in range(settings.worker_count):
            self.workers.append(self._spawn())
        code = self._wait_workers_ready()
        if code is not None:
            return code
        logger.info(
            "Started ScoringService at %s:%d (%d workers, entry script %s)",
            host,
            port,
            len(self.workers),
            settings.entry_script,
        )
        return self._watch()

    def _watch(self) -> int:
        while not self._stop.wait(_CUSTODY_TICK_S):
            self._take_custody()
            if self.server is not None and self.server.poll() is not None:
                logger.error("the inference server exited (%s); stopping", self.server.returncode)
                return EXIT_SERVER_DIED
            for index, worker in enumerate(self.workers):
                self._check_ready(worker)
                code = worker.proc.poll()
                if code is None:
                    continue
                self._lingering += worker.ended()
                if code == EXIT_INIT_FAILED:
                    logger.error("a replacement worker could not load the entry script")
                    return EXIT_INIT_FAILED
                if not self._may_restart():
                    logger.error("workers keep dying; stopping")
                    return 1
                logger.warning("worker %d exited (%s); starting another", worker.proc.pid, code)
                self.workers[index] = self._spawn()
        return 0

    def _take_custody(self) -> None:
        """Take in the workers' custody messages (a batch per tick, not a wake-up per
        connection) and let answered connections of dead workers linger."""
        for worker in self.workers:
            if worker.custody is not None:
                worker.custody.pump()
        if self._lingering:
            self._lingering = linger(self._lingering)

    def _wait_workers_ready(self) -> int | None:
        deadline = time.monotonic() + self.settings.worker_timeout_s
        while not all(w.ready for w in self.workers):
            if self._stop.is_set():
                return 0
            for worker in self.workers:
                self._check_ready(worker)
                code = worker.proc.poll()
                if code is not None and not worker.ready:
                    logger.error("a worker exited with %s while loading the entry script", code)
                    return EXIT_INIT_FAILED
            if time.monotonic() > deadline:
                logger.error(
                    "the workers did not start within WORKER_TIMEOUT=%gs",
                    self.settings.worker_timeout_s,
                )
                return EXIT_INIT_FAILED
            self._take_custody()  # connections the ready workers hand over meanwhile
            fds = [w.ready_fd for w in self.workers if w.ready_fd >= 0]
            if fds:
                select.select(fds, [], [], _POLL_S)
            else:
                time.sleep(_POLL_S)
        return None

    def _check_ready(self, worker: _Worker) -> None:
        """Read the worker's one-byte "serving" note, if it has come; EOF means it died."""
        if worker.ready or worker.ready_fd < 0:
            return
        readable, _, _ = select.select([worker.ready_fd], [], [], 0)
        if readable:
            worker.ready = os.read(worker.ready_fd, 1) == b"1"
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < _RESTART_WINDOW_S]
        self._restarts.append(now)
        return len(self._restarts) <= _RESTART_LIMIT

    def _spawn(self) -> _Worker:
        assert self._sock is not None
        read_fd, write_fd = os.pipe()
        fd = self._sock.fileno()
        try:
            custody: CustodyKeeper | None = CustodyKeeper()
        except OSError as exc:  # no SOCK_SEQPACKET or memfd here: serve without it
            logger.warning("no connection custody for a worker: %s", exc)
            custody = None
        extra = custody.worker_fds if custody is not None else ()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tidal.scoring.worker",
                str(fd),
                str(write_fd),
                self.settings.to_json(),
                *(str(f) for f in extra),
            ],
            pass_fds=(fd, write_fd, *extra),
            stdin=subprocess.DEVNULL,
            env=self._env,
        )
        os.close(write_fd)
        if custody is not None:
            custody.close_worker_ends()
        return _Worker(proc, read_fd, custody)

    def _shutdown(self) -> None:
        """SIGTERM the workers, then the inference server; SIGKILL whatever is still running
        after its grace, so no child is left behind (a run() stuck in user code ignores
        SIGTERM)."""
        workers = [w.proc for w in self.workers]
        _terminate(workers, self.settings.shutdown_delay_s + SHUTDOWN_GRACE_S + _KILL_GRACE_S)
        for worker in self.workers:
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
            self._lingering += worker.ended()  # a request a killed worker was stuck in
        deadline = time.monotonic() + LINGER_S
        while self._lingering and time.monotonic() < deadline:
            self._lingering = linger(self._lingering)
            time.sleep(_CUSTODY_TICK_S)
        for conn, _ in self._lingering:
            conn.close()
        if self.server is not None:
            _terminate([self.server], _SERVER_STOP_TIMEOUT_S)
        if self._sock is not None:
            self._sock.close()
        end_children(_KILL_GRACE_S)  # anything else this process started

    # -- the inference server -----------------------------------------------------------------

    def _start_server(self) -> int | None:
        """Start ``tidal serve`` and wait for its readiness; an exit code if that fails."""
        args = [sys.executable, "-m", "tidal", "serve"]
        for repo in self.settings.model_repository:
            args += ["--model-repository", repo]
        args += list(self.settings.serve_args)
        pass_fds: tuple[int, ...] = ()
        if self.settings.server_listen_fd >= 0:
            args.append(f"--http-listen-fd={self.settings.server_listen_fd}")
            pass_fds = (self.settings.server_listen_fd,)
        self.server = subprocess.Popen(
            args,
            pass_fds=pass_fds,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            preexec_fn=die_with_parent,  # no threads run yet: preexec_fn is safe here
        )
        announced = threading.Event()
        threading.Thread(
            target=self._relay_server_log, args=(announced,), name="serve-log", daemon=True
        ).start()
        while not announced.wait(_READY_POLL_S):
            if self._stop.is_set():
                return 0
            if self.server.poll() is not None:
                logger.error("the inference server exited with %s", self.server.returncode)
                return EXIT_SERVER_DIED
        while not _ready(self.server_url):
            if self._stop.wait(_READY_POLL_S):
                return 0
            if self.server.poll() is not None:
                logger.error("the inference server exited with %s", self.server.returncode)
                return EXIT_SERVER_DIED
        logger.info("the inference server at %s is ready", self.server_url)
        self._env[INFERENCE_URL_ENV] = self.server_url
        return None

    def _relay_server_log(self, announced: threading.Event) -> None:
        assert self.server is not None and self.server.stderr is not None
        for line in self.server.stderr:
            sys.stderr.write(line)
            if not announced.is_set():
                match = _SERVER_STARTED.search(line)
                if match:
                    host = match.group(1)
                    if host in ("0.0.0.0", "::", "[::]"):
                        host = "127.0.0.1"
                    self.server_url = f"{host}:{match.group(2)}"
                    announced.set()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _raise_open_files_limit() -> None:
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _exit_reason(proc: subprocess.Popen) -> str:
    code = proc.returncode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"pid {proc.pid} was killed by {name}"
    return f"pid {proc.pid} exited with code {code}"


def _terminate(procs: Sequence[subprocess.Popen], timeout: float) -> None:
    """SIGTERM each running process, wait up to ``timeout`` seconds for all, SIGKILL the
    rest."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("process %d did not stop within %gs; killing it", proc.pid, timeout)
            proc.kill()
            proc.wait()
