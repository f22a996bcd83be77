"""One scoring worker process: load the entry script, serve the inherited socket.

Started by the supervisor as ``python -m tidal.scoring.worker SOCKET_FD READY_FD SETTINGS_JSON
[CUSTODY_FD FLAGS_FD]``. It writes one byte to READY_FD once it serves, and exits with 3 if the
script cannot load. With the custody descriptors, the supervisor holds a copy of each
connection and answers it if this worker dies mid-request (``custody.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from tidal.core.child_process import exit_when_orphaned
from tidal.core.reply import Reply
from tidal.http1.connection import HttpConnection
from tidal.http1.transport import HttpService
from tidal.scoring.custody import CustodyClient
from tidal.scoring.entry import EntryScriptError, load_entry_script, set_azureml_env
from tidal.scoring.routes import QUERY_KEY, Authenticator, ScoringHandlers
from tidal.scoring.settings import ScoreSettings
from tidal.scoring.shims import install

logger = logging.getLogger("tidal.scoring")

EXIT_INIT_FAILED = 3
SHUTDOWN_GRACE_S = 10.0  # after SIGTERM (and the shutdown delay), requests get this long
# A worker whose supervisor is gone (killed outright) gets SIGTERM from itself and this long
# to finish what it answers, then leaves, even with run() stuck on the main thread.
_ORPHAN_GRACE_S = 3.0
_TREE_LIMIT = 200  # lines of the model folder listed after a failed start


def model_tree(folder: str) -> str:
    """The model folder's files, for the log of a failed start."""
    root = Path(folder)
    if not root.is_dir():
        return f"{folder} (not a folder)"
    lines = [str(root)]
    for path in sorted(root.rglob("*")):
        if len(lines) > _TREE_LIMIT:
            lines.append("  ...")
            break
        depth = len(path.relative_to(root).parts)
        lines.append("  " * depth + path.name + ("/" if path.is_dir() else ""))
    return "\n".join(lines)


def _load_auth(settings: ScoreSettings) -> Authenticator | None:
    if not settings.auth_keys_file:
        return None
    from tidal.security.auth import BearerAuth  # imported only when keys are asked for

    if settings.auth_open_health:
        return BearerAuth.from_file(settings.auth_keys_file)
    return BearerAuth.from_file(settings.auth_keys_file, open_paths=())


class _KeptConnection(HttpConnection):
    """A connection the supervisor holds a copy of (``custody.py``), marked busy while a
    request is being answered, so that a worker dying in run() still gets its client a 502."""

    custody: CustodyClient  # set on the class before the service starts

    def __init__(self, service: HttpService) -> None:
        super().__init__(service)
        self._slot = -1
        self._fd = -1
        self._inner = self._handle
        self._handle = self._handle_kept

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._discard:
            self._fd = transport.get_extra_info("socket").fileno()
            self._slot = self.custody.hold(self._fd)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._slot >= 0:
            self.custody.release(self._slot, self._fd)
            self._slot = -1
        super().connection_lost(exc)

    def _handle_kept(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | Coroutine[Any, Any, Reply]:
        slot = self._slot
        if slot < 0:
            return self._inner(method, path, headers, body)
        flags = self.custody.flags
        flags[slot] = 1
        try:
            answer = self._inner(method, path, headers, body)
        except BaseException:
            flags[slot] = 0
            raise
        if isinstance(answer, Reply):
            flags[slot] = 0
            return answer
        return self._finish(answer, slot)

    async def _finish(self, answer: Coroutine[Any, Any, Reply], slot: int) -> Reply:
        try:
            return await answer
        finally:
            self.custody.flags[slot] = 0


class _KeptService(HttpService):
    def new_connection(self) -> HttpConnection:
        return _KeptConnection(self)


async def _serve(
    handlers: ScoringHandlers, sock: socket.socket, ready_fd: int, custody: CustodyClient | None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service_class = HttpService
    if custody is not None:
        _KeptConnection.custody = custody
        service_class = _KeptService
    # GET /score needs the query string: it comes among the headers under QUERY_KEY.
    service = await service_class.start(
        handlers,
        sock,
        max_body_size=handlers.settings.max_body_size,
        too_large=handlers.too_large,
        query_header=QUERY_KEY,
    )
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    await stop.wait()
    delay = handlers.settings.shutdown_delay_s
    if delay > 0:
        # A replacement shares the socket: let it take new connections at once, answer the
        # keep-alive clients with `connection: close` for a while, then close the idle ones.
        stop.clear()
        service.end_keep_alive(stop_accepting=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        service.close_idle()
    await service.shutdown(SHUTDOWN_GRACE_S)
    handlers.close()
    return 0


def main(argv: list[str]) -> int:
    exit_when_orphaned(os.getppid(), grace_s=_ORPHAN_GRACE_S)
    sock_fd, ready_fd, text = int(argv[0]), int(argv[1]), argv[2]
    settings = ScoreSettings.from_json(text)
    logging.basicConfig(
        level=logging.DEBUG if settings.log_verbose else logging.INFO,
        format=f"%(asctime)s.%(msecs)03d %(levelname).1s worker-{os.getpid()}] %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    sock = socket.socket(fileno=sock_fd)
    set_azureml_env(settings)
    install()
    try:
        script = load_entry_script(settings.entry_script)
        auth = _load_auth(settings)
    except EntryScriptError as exc:
        cause = exc.__cause__ or exc
        tb = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        logger.error("%s\n%s", exc, tb)
        logger.error("model folder AZUREML_MODEL_DIR:\n%s", model_tree(settings.model_dir))
        return EXIT_INIT_FAILED
    except Exception as exc:
        logger.error("cannot set up authentication: %s", exc)
        return EXIT_INIT_FAILED
    handlers = ScoringHandlers(script, settings, auth)
    custody = CustodyClient(int(argv[3]), int(argv[4])) if len(argv) > 4 else None
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_serve(handlers, sock, ready_fd, custody))
    return uvloop.run(_serve(handlers, sock, ready_fd, custody))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
