"""Start ``tidal serve`` as a pinned child process and read back its port and memory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_STARTED = re.compile(r"Started HTTPService at ([0-9.]+):(\d+)")


class TidalProcess:
    """``tidal serve`` on a free loopback port, optionally pinned with ``taskset``."""

    def __init__(self, repositories: list[Path], cpus: str | None, extra: list[str]) -> None:
        command = [
            sys.executable,
            "-m",
            "tidal",
            "serve",
            "--http-address",
            "127.0.0.1",
            "--http-port",
            "0",
        ]
        for repository in repositories:
            command += ["--model-repository", str(repository)]
        command += extra
        if cpus:
            command = ["taskset", "-c", cpus, *command]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.port = self._wait_for_port(timeout=120)
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

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
        deadline = time.monotonic() + timeout
        assert self.process.stderr is not None
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            if not line:
                break
            self.log.append(line)
            match = _STARTED.search(line)
            if match:
                return int(match.group(2))
        self.stop()
        raise RuntimeError("tidal did not start:\n" + "".join(self.log[-30:]))

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)


def default_perf_analyzer() -> str:
    """``$PERF_ANALYZER``, else the wrapper that setup_perf_analyzer.sh writes."""
    return os.environ.get(
        "PERF_ANALYZER", str(Path(__file__).resolve().parent / ".work" / "perf_analyzer")
    )
