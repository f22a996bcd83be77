"""The supervisor of one local service: ``python -m tidal.deploy.host SERVICE_DIR PUBLIC_FD``.

Started detached by ``ServiceManager`` (own session, stdout and stderr on the service's log
file), it holds the public listening socket the manager bound and runs one *generation* of
server processes on it (``tidal serve`` or ``tidal score``, given the socket by file
descriptor). A generation is ready when it logs that it serves; the host then checks the
service's health route with the primary key every few seconds and records the state in SQLite.

SIGHUP: read ``host.json`` again and roll to a new generation on the same socket; the old one
gets SIGTERM only once the new one is ready, and both share the accept queue meanwhile, so no
connection is refused. SIGTERM: stop the generation and exit. A generation that dies is
restarted a few times; if it cannot be, the service is recorded as Failed with the reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidal.core.child_process import die_with_parent
from tidal.core.sockets import bind_socket
from tidal.deploy import state
from tidal.deploy.processes import free_port

logger = logging.getLogger("tidal.deploy.host")

HOST_FILE = "host.json"
KEYS_FILE = "keys.json"
APP_GLOB = "app-*"  # one app folder per generation of an entry-script service
INFERENCE_PORT = 8000  # what the Azure samples call from run(); used when it is free
SHUTDOWN_DELAY_S = 2.0  # the old generation's hand-over window during an update
_READY_MARKERS = {"serve": "Started HTTPService at", "score": "Started ScoringService at"}
_HEALTH_PATHS = {"serve": "/v2/health/ready", "score": "/"}
_TICK_S = 0.2
_HEALTH_EVERY_S = 2.0
_STOP_WAIT_S = 40.0
_RESTART_LIMIT = 3
_HANDOVER_S = 0.5
_ERRORS_KEPT = 5
# "12:00:00.000 E tidal.scoring] message": the servers' log format, level E
_ERROR_LINE = re.compile(r"^[0-9:.]+ E [^\]]*\] ")
_UNHEALTHY_AFTER = 2  # failed health checks in a row
_RESTART_WINDOW_S = 60.0


@dataclass
class _Generation:
    number: int
    proc: subprocess.Popen
    grpc_port: int | None
    ready: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)  # its first error lines, for the reason


class Host:
    """Runs the generations of one service until SIGTERM or an unrecoverable failure."""

    def __init__(self, service_dir: Path, public: socket.socket) -> None:
        self.dir = service_dir
        self.public = public
        self.port = public.getsockname()[1]
        self.spec: dict[str, Any] = {}
        self.internal: socket.socket | None = None  # the inference server's loopback socket
        self.active: _Generation | None = None
        self.stopping = threading.Event()
        self.reload = threading.Event()
        self.restarts: list[float] = []
        self.state = ""
        self.failed_checks = 0

    # -- main loop ----------------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload.set())
        self.spec = self._read_spec()
        self._record(state="Transitioning", error=None)
        first = self._start(self.spec)
        if first is None or not self._await_ready(first):
            return self._fail(first, "the service did not start")
        self._activate(first)
        last_health = 0.0
        while not self.stopping.wait(_TICK_S):
            active = self.active
            assert active is not None
            if active.proc.poll() is not None:
                if not self._restart(active):
                    return 1
                continue
            if self.reload.is_set():
                self.reload.clear()
                self._roll()
                continue
            if time.monotonic() - last_health >= _HEALTH_EVERY_S:
                last_health = time.monotonic()
                self._check_health()
        logger.info("stopping the service")
        if self.active is not None:
            _terminate(self.active.proc)
        return 0

    def _roll(self) -> None:
        """Start the generation ``host.json`` now describes; swap once it is ready."""
        spec = self._read_spec()
        number = int(spec["generation"])
        logger.info("update: starting generation %d beside generation %d", number, self._number())
        self._record(state="Transitioning")
        new = self._start(spec)
        if new is None or not self._await_ready(new):
            reason = self._reason(new, f"generation {number} did not start")
            if new is not None and new.proc.poll() is None:
                _terminate(new.proc)
            logger.error("update failed, generation %d goes on serving: %s", self._number(), reason)
            self._write_spec(self.spec)  # what runs is what host.json describes
            if spec.get("app_root") and spec.get("app_root") != self.spec.get("app_root"):
                shutil.rmtree(spec["app_root"], ignore_errors=True)
            self._record(
                state="Healthy", failed_generation=number, error=f"update failed: {reason}"
            )
            return
        old = self.active
        self.spec = spec
        if old is not None:
            # SIGTERM: the old generation stops accepting (the new one shares the socket) and
            # answers its keep-alive clients with connection: close for a moment. Give it time
            # to let go of the socket before the update is reported done. One signal only
            # (sent by _retire): a second one would cut that moment short.
            threading.Thread(
                target=_retire, args=(old.proc, self.dir, spec.get("app_root")), daemon=True
            ).start()
            time.sleep(_HANDOVER_S)
        self._activate(new)

    def _restart(self, dead: _Generation) -> bool:
        reason = self._reason(dead, "the service's processes exited")
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < _RESTART_WINDOW_S]
        if len(self.restarts) >= _RESTART_LIMIT:
            self._fail(dead, f"{reason}; restarted {_RESTART_LIMIT} times, giving up")
            return False
        self.restarts.append(now)
        logger.warning("%s; restarting", reason)
        self._record(state="Transitioning", error=f"restarting: {reason}")
        new = self._start(self.spec)
        if new is None or not self._await_ready(new):
            self._fail(new, "the service could not be restarted")
            return False
        self._activate(new)
        return True

    def _activate(self, generation: _Generation) -> None:
        self.active = generation
        self.failed_checks = 0
        logger.info("generation %d is serving on port %d", generation.number, self.port)
        # The generation said it serves: that is its own readiness. A check on the public port
        # now could reach the previous generation, so the health checks start from here.
        self._record(
            state="Healthy",
            active_generation=generation.number,
            grpc_port=generation.grpc_port,
            error=None,
        )

    def _fail(self, generation: _Generation | None, fallback: str) -> int:
        reason = self._reason(generation, fallback)
        if generation is not None and generation.proc.poll() is None:
            _terminate(generation.proc)
        logger.error("service failed: %s", reason)
        self._record(state="Failed", error=reason)
        return 1

    def _reason(self, generation: _Generation | None, fallback: str) -> str:
        if generation is None:
            return self._start_error or fallback
        code = generation.proc.poll()
        if code is None:
            return fallback
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        first = generation.errors[0] if generation.errors else ""
        return f"{fallback}: the server process exited ({how})" + (f": {first}" if first else "")

    # -- generations ---------------------------------------------------------------------------

    _start_error = ""

    def _start(self, spec: dict[str, Any]) -> _Generation | None:
        """Start one generation; None (and ``_start_error``) when it cannot even be started."""
        try:
            command, env, cwd, grpc_port = self._command(spec)
        except Exception as exc:  # an environment that will not build, a vanished file
            self._start_error = str(exc)
            logger.error("cannot start generation %s: %s", spec.get("generation"), exc)
            return None
        logger.info("starting: %s", " ".join(command))
        fds = [self.public.fileno()] + ([self.internal.fileno()] if self.internal else [])
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=sys.stdout,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            preexec_fn=die_with_parent,
        )
        generation = _Generation(int(spec["generation"]), proc, grpc_port)
        marker = _READY_MARKERS[spec["mode"]]
        threading.Thread(
            target=_relay, args=(generation, marker), name="relay", daemon=True
        ).start()
        return generation

    def _await_ready(self, generation: _Generation) -> bool:
        """Until the generation says it serves (True) or exits, or the host is stopped."""
        while not generation.ready.wait(_TICK_S):
            if generation.proc.poll() is not None or self.stopping.is_set():
                return False
        return True

    def _command(self, spec: dict[str, Any]) -> tuple[list[str], dict[str, str], str, int | None]:
        env = dict(os.environ)
        env.update(spec.get("environment_variables") or {})
        public_fd = str(self.public.fileno())
        auth = ["--auth-keys-file", spec["auth_keys_file"]] if spec.get("auth_keys_file") else []
        if spec["mode"] == "serve":
            grpc_port = free_port() if self.active is not None else int(spec["grpc_port"])
            command = [
                sys.executable, "-m", "tidal", "serve",
                "--model-repository", spec["model_repository"][0],
                "--http-listen-fd", public_fd,
                "--grpc-port", str(grpc_port),
                "--allow-metrics=false",
                "--shutdown-delay-secs", str(SHUTDOWN_DELAY_S),
                *auth,
            ]  # fmt: skip
            if auth:
                command.append("--auth-open-path=")  # keys on every route, health included
            return command, env, str(self.dir), grpc_port
        python = self._python(spec)
        command = [
            str(python), "-m", "tidal", "score",
            "--entry_script", spec["entry_script"],
            "--model_dir", spec["model_dir"],
            "--listen-fd", public_fd,
            "--shutdown-delay-secs", str(SHUTDOWN_DELAY_S),
            *auth,
        ]  # fmt: skip
        if auth:
            command.append("--no-auth-open-health")
        if spec.get("max_concurrent_requests"):
            command += ["--max-concurrent-requests", str(spec["max_concurrent_requests"])]
        if spec.get("scoring_timeout_ms"):
            env["SCORING_TIMEOUT_MS"] = str(spec["scoring_timeout_ms"])
        repositories = spec.get("model_repository") or []
        if repositories:
            if self.internal is None:
                self.internal = _internal_socket()
                logger.info(
                    "the inference server listens at 127.0.0.1:%d (INFERENCE_SERVER_URL)",
                    self.internal.getsockname()[1],
                )
            for repo in repositories:
                command += ["--model-repository", repo]
            command += [
                "--server-listen-fd", str(self.internal.fileno()),
                "--serve-arg=--grpc-address=127.0.0.1",
                "--serve-arg=--grpc-port=0",
                "--serve-arg=--allow-metrics=false",
                f"--serve-arg=--shutdown-delay-secs={SHUTDOWN_DELAY_S}",
            ]  # fmt: skip
        return command, env, spec["app_root"], None

    def _python(self, spec: dict[str, Any]) -> Path:
        packages = spec.get("pip_packages") or []
        if not packages:
            return Path(sys.executable)
        from tidal.deploy.environment import python_for_environment

        logger.info("preparing the environment: %s", ", ".join(packages))
        return python_for_environment(
            Path(spec["home"]), packages, output=lambda line: logger.info("pip: %s", line)
        )

    # -- health and state -------------------------------------------------------------------

    def _healthy(self) -> bool:
        path = _HEALTH_PATHS[self.spec["mode"]]
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        key = self._primary_key()
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _check_health(self) -> None:
        healthy = self._healthy()
        self.failed_checks = 0 if healthy else self.failed_checks + 1
        if not healthy and self.failed_checks < _UNHEALTHY_AFTER:
            return
        wanted = "Healthy" if healthy else "Unhealthy"
        if wanted != self.state:
            if not healthy:
                logger.warning("health check failed on port %d", self.port)
            self._record(state=wanted, error=None if healthy else "the health check failed")

    def _primary_key(self) -> str:
        try:
            return json.loads((self.dir / KEYS_FILE).read_text("utf-8"))["primary"]
        except (OSError, ValueError, KeyError):
            return ""

    def _record(self, **values: Any) -> None:
        if "state" in values:
            self.state = values["state"]
        state.update(Path(self.spec["home"]), self.spec["name"], **values)

    def _number(self) -> int:
        return self.active.number if self.active is not None else 0

    def _read_spec(self) -> dict[str, Any]:
        return json.loads((self.dir / HOST_FILE).read_text("utf-8"))

    def _write_spec(self, spec: dict[str, Any]) -> None:
        tmp = self.dir / (HOST_FILE + ".tmp")
        tmp.write_text(json.dumps(spec, indent=2), encoding="utf-8")
        tmp.replace(self.dir / HOST_FILE)


def _relay(generation: _Generation, marker: str) -> None:
    """Copy the generation's log lines to ours; note when it says it serves."""
    assert generation.proc.stderr is not None
    for line in generation.proc.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        if len(generation.errors) < _ERRORS_KEPT and _ERROR_LINE.match(line):
            generation.errors.append(_ERROR_LINE.sub("", line).strip())
        if marker in line:
            generation.ready.set()


def _retire(proc: subprocess.Popen, service_dir: Path, keep: str | None) -> None:
    """Stop a replaced generation, then remove the app folders no generation uses."""
    _terminate(proc)
    _remove_apps(service_dir, keep)


def _remove_apps(service_dir: Path, keep: str | None) -> None:
    """Remove the app folders older than ``keep``; newer ones may belong to an update under way."""
    if not keep:
        return
    current = _stamp(Path(keep))
    for app in service_dir.glob(APP_GLOB):
        if _stamp(app) < current:
            shutil.rmtree(app, ignore_errors=True)


def _stamp(app: Path) -> int:
    try:
        return int(app.name.rpartition("-")[2])
    except ValueError:
        return 0


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(_STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _internal_socket() -> socket.socket:
    """A loopback listening socket for the inference server, on 8000 when that is free."""
    try:
        return bind_socket("127.0.0.1", INFERENCE_PORT, inheritable=True)
    except OSError:
        return bind_socket("127.0.0.1", 0, inheritable=True)


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(levelname).1s host-%(process)d] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    service_dir, fd = Path(argv[0]), int(argv[1])
    public = socket.socket(fileno=fd)
    public.set_inheritable(True)
    host = Host(service_dir, public)
    try:
        return host.run()
    except Exception as exc:  # record the reason rather than leave a stale state behind
        logger.exception("the service host failed")
        with contextlib.suppress(Exception):
            host._record(state="Failed", error=f"the service host failed: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
