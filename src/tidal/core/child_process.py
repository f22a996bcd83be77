"""Child processes that must not outlive the process that started them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

__all__ = ["die_with_parent", "end_children", "exit_when_orphaned", "live_children"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_POLL_S = 0.05


def die_with_parent() -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: on Linux the child gets SIGTERM when its
    parent dies, even when the parent is killed outright; elsewhere nothing happens."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def live_children(pid: int | None = None) -> list[int]:
    """The running (not zombie) children of ``pid`` (this process by default), from
    ``/proc``; an empty list where there is no ``/proc``."""
    pid = os.getpid() if pid is None else pid
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return [p for p in found if _running(p)]


def end_children(grace_s: float) -> list[int]:
    """SIGTERM every running child, then SIGKILL those still running after ``grace_s``
    seconds; returns the PIDs that had to be killed. For the last moments of a process,
    whatever started the children (a model worker stuck in its code, a thread that never
    reaped): none is left behind to be re-parented to init."""
    pids = live_children()
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(_POLL_S)
        pids = [p for p in pids if _running(p)]
    _signal_all(pids, signal.SIGKILL)
    return pids


def exit_when_orphaned(parent: int, *, grace_s: float = 0.0, interval_s: float = 0.5) -> None:
    """Watch, on a daemon thread, for ``parent`` to die (this process is then re-parented);
    then SIGTERM this process and, ``grace_s`` seconds later, leave with ``os._exit(1)``
    whatever its main thread is doing. Works under any interpreter and without ``prctl``,
    and it keeps watching when the main thread is stuck in user code."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        if grace_s > 0:
            with contextlib.suppress(OSError):
                os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
