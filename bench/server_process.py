"""Start ``tidal serve`` as a pinned child process and read back its port and memory."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

_STARTED = re.compile(r"Started HTTPService at ([0-9.]+):(\d+)")


class TidalProcess:
    """``tidal serve`` on a free loopback port, optionally pinned with ``taskset``."""

    def __init__(
        self,
        repositories: list[Path],
        cpus: str | None,
        extra: list[str],
        *,
        grpc_port: int | None = None,
        timeout: float = 120,
    ) -> None:
        command = [
            sys.executable,
            "-m",
            "tidal",
            "serve",
            "--http-address",
            "127.0.0.1",
            "--http-port",
            "0",
            "--metrics-port",
            "0",  # a free port: 8002 may be taken by another server on the machine
        ]
        for repository in repositories:
            command += ["--model-repository", str(repository)]
        if grpc_port is not None:
            command += ["--grpc-port", str(grpc_port)]
        command += extra
        if cpus:
            command = ["taskset", "-c", cpus, *command]
        self.command = command
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self._port: int | None = None
        self._started = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        self.port = self._wait_for_port(timeout=timeout)
        # The gRPC port it was told (later flags win, so a --grpc-port in `extra` counts).
        self.grpc_port = _last_flag_value(command, "--grpc-port", grpc_port)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_mib(self) -> float:
        """Resident memory of the server process, from /proc."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kib = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
        return kib / 1024

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _wait_for_port(self, timeout: float) -> int:
        """The HTTP port from the start-up log; it is logged once every model has loaded."""
        self._started.wait(timeout)
        if self._port is None:
            exited = self.process.poll() is not None
            self.stop()
            code = self.process.returncode
            reason = f"exit code {code}" if exited else f"not up in {timeout:.0f} s"
            raise RuntimeError(f"tidal did not start ({reason}):\n" + "".join(self.log[-30:]))
        return self._port

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            if self._port is None:
                match = _STARTED.search(line)
                if match:
                    self._port = int(match.group(2))
                    self._started.set()
        self._started.set()  # the process ended: stop waiting


def _last_flag_value(command: list[str], flag: str, default: int | None) -> int | None:
    value = default
    for index, word in enumerate(command):
        if word == flag and index + 1 < len(command):
            value = int(command[index + 1])
        elif word.startswith(flag + "="):
            value = int(word.partition("=")[2])
    return value


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_perf_analyzer() -> str:
    """``$PERF_ANALYZER``, else the wrapper that setup_perf_analyzer.sh writes."""
    return os.environ.get(
        "PERF_ANALYZER", str(Path(__file__).resolve().parent / ".work" / "perf_analyzer")
    )
