"""``ScoringHandlers``: the routes of one worker (``/``, ``/score``, ``/swagger.json``)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson

from tidal.core.reply import Reply
from tidal.scoring.entry import EntryScript
from tidal.scoring.settings import ScoreSettings
from tidal.scoring.shims import AMLRequest, AMLResponse
from tidal.scoring.swagger import swagger_document

__all__ = ["QUERY_KEY", "Authenticator", "ScoringHandlers"]

logger = logging.getLogger("tidal.scoring")

# The transport passes the query string among the headers under a name no real header can have.
QUERY_KEY = ":query"
_JSON = "application/json"
_SCORE_METHODS = "GET, POST, OPTIONS"


def message_reply(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Reply:
    """Azure ML's error shape: ``{"message": ...}``."""
    return Reply(status, orjson.dumps({"message": message}), _JSON, headers or [])


class Authenticator(Protocol):
    """What guards the routes (``tidal.security.auth.BearerAuth``): None lets a request on."""

    def check(self, path: str, headers: Mapping[str, str]) -> Reply | None: ...


class ScoringHandlers:
    """Routes requests to the entry script; every failure becomes ``{"message": ...}``."""

    def __init__(
        self, script: EntryScript, settings: ScoreSettings, auth: Authenticator | None = None
    ) -> None:
        self.script = script
        self.settings = settings
        self.auth = auth
        # The transport calls this once a request's headers are in, before its body is read:
        # a request without a key costs no body. None (no keys): nothing to call.
        self.check_head: Callable[[str, str, Mapping[str, str]], Reply | None] | None = (
            self._check_key if auth is not None else None
        )
        self.prefix = settings.service_path_prefix
        self.timeout_s = settings.scoring_timeout_ms / 1000.0
        self.origins = settings.cors_origins
        # maxConcurrentRequestsPerContainer is per service: each worker takes its share.
        limit = settings.max_concurrent_requests
        self._limit = -(-limit // settings.worker_count) if limit > 0 else 0
        self._active = 0
        # One thread per worker runs a synchronous run(): scripts need not be thread-safe, and
        # the worker count is the unit of parallelism, as in Azure ML's server.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="score-run")
        self._inline = _can_run_inline()
        self._run_number = 0  # which run() is under way (odd) or the last one (even)
        self._alarm_for = -1  # the run the watchdog interrupted
        self._deadline = 0.0
        self._closed = threading.Event()
        if self._inline:
            signal.signal(signal.SIGALRM, self._on_alarm)
            threading.Thread(target=self._watchdog, name="score-timeout", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | Coroutine[Any, Any, Reply]:
        """The reply, or a coroutine for it when run() is async or runs on a thread.

        The key was checked already, from the headers (``check_head``)."""
        path = self._local(path)
        route = _ROUTES.get(path)
        if route is None:
            return message_reply(404, f"the requested path {path} was not found on this server")
        return route(self, method, path, headers, body)

    def too_large(self, limit: int, size: int | None) -> Reply:
        """The answer to a body over --max-request-body-size: 413, from the headers when
        they declare the size."""
        what = f"the request body of {size} bytes" if size is not None else "the request body"
        return message_reply(
            413,
            f"{what} is larger than the limit of {limit} bytes (--max-request-body-size, "
            "TIDAL_SCORE_MAX_BODY_SIZE)",
        )

    def _local(self, path: str) -> str:
        if self.prefix and path.startswith(self.prefix):
            return path[len(self.prefix) :] or "/"
        return path

    def _check_key(self, method: str, path: str, headers: Mapping[str, str]) -> Reply | None:
        assert self.auth is not None
        denied = self.auth.check(self._local(path), headers)
        return None if denied is None else _in_message_shape(denied)

    def _health(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | Coroutine[Any, Any, Reply]:
        if method in ("GET", "HEAD"):
            return Reply(200, b"Healthy", "text/plain; charset=utf-8")
        return self._not_allowed(method, path, "GET")

    def _score_route(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | Coroutine[Any, Any, Reply]:
        if method == "OPTIONS":
            return Reply(200, b"", "text/plain", [("Allow", _SCORE_METHODS)])
        if method not in ("GET", "POST"):
            return self._not_allowed(method, path, _SCORE_METHODS)
        answer = self._score(method, path, headers, body)
        if isinstance(answer, Reply):
            return self._add_cors(answer, headers)
        return self._later_with_cors(answer, headers)

    def _swagger(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | Coroutine[Any, Any, Reply]:
        if method != "GET":
            return self._not_allowed(method, path, "GET")
        return Reply(200, orjson.dumps(swagger_document(self.script, self.prefix)), _JSON)

    # -- /score -------------------------------------------------------------------------------

    async def _later_with_cors(
        self, answer: Coroutine[Any, Any, Reply], headers: Mapping[str, str]
    ) -> Reply:
        return self._add_cors(await answer, headers)

    def _score(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | Coroutine[Any, Any, Reply]:
        if self._inline and not self.script.is_async:
            return self._score_now(method, path, headers, body)
        return self._score_later(method, path, headers, body)

    def _score_now(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Reply:
        """A synchronous run() on this thread (see ``_run_inline``)."""
        prepared = self._prepare(method, path, headers, body)
        if isinstance(prepared, Reply):
            return prepared
        argument, ids, request_id = prepared
        started = time.perf_counter()
        self._active += 1
        try:
            result = self._run_inline(argument)
        except Exception as exc:
            return self._failure(exc, argument, started, ids, request_id)
        finally:
            self._active -= 1
        return self._success(result, started, ids, request_id)

    async def _score_later(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        """An async run(), or a synchronous one on the run thread."""
        # Checked when the request's turn comes, with nothing awaited between the check and
        # the count: a coroutine that is dropped unstarted leaves no count behind.
        prepared = self._prepare(method, path, headers, body)
        if isinstance(prepared, Reply):
            return prepared
        argument, ids, request_id = prepared
        started = time.perf_counter()
        self._active += 1
        try:
            result = await self._call(argument)
        except Exception as exc:
            return self._failure(exc, argument, started, ids, request_id)
        finally:
            self._active -= 1
        return self._success(result, started, ids, request_id)

    def _prepare(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> Reply | tuple[Any, list[tuple[str, str]], str]:
        """run()'s argument, the id headers and the request id; or the refusal."""
        request_id = headers.get("x-request-id") or _new_request_id()
        ids = [
            ("x-request-id", request_id),
            ("x-ms-request-id", request_id),
            ("x-ms-client-request-id", headers.get("x-ms-client-request-id", request_id)),
        ]
        # Refused before the body is parsed: under overload the refusal must stay cheap.
        if self._limit and self._active >= self._limit:
            return message_reply(
                503,
                f"Service busy: {self.settings.max_concurrent_requests} concurrent requests "
                "already in progress (maxConcurrentRequestsPerContainer); retry later",
                [*ids, ("retry-after", "1")],
            )
        try:
            argument = self._argument(method, path, headers.get(QUERY_KEY, ""), headers, body)
        except _BadInput as exc:
            return message_reply(exc.status, str(exc), ids)
        return argument, ids, request_id

    def _success(
        self, result: Any, started: float, ids: list[tuple[str, str]], request_id: str
    ) -> Reply:
        elapsed = (time.perf_counter() - started) * 1000.0
        ids.append(("x-ms-run-fn-exec-ms", f"{elapsed:.3f}"))
        return _encode(result, ids, request_id)

    def _failure(
        self,
        exc: Exception,
        argument: Any,
        started: float,
        ids: list[tuple[str, str]],
        request_id: str,
    ) -> Reply:
        if isinstance(exc, TimeoutError):
            ms = self.settings.scoring_timeout_ms
            logger.error("request %s: scoring timeout after %d ms", request_id, ms)
            return message_reply(500, f"Scoring timeout after {ms} ms", ids)
        if isinstance(argument, _Kwargs) and _is_conversion_error(exc):
            return message_reply(400, str(exc), ids)
        elapsed = (time.perf_counter() - started) * 1000.0
        logger.error("request %s: run() raised", request_id, exc_info=exc)
        return message_reply(
            500,
            f"An unexpected error occurred in scoring script: {type(exc).__name__}: {exc}",
            [*ids, ("x-ms-run-function-failed", "True"), ("x-ms-run-fn-exec-ms", f"{elapsed:.3f}")],
        )

    def _argument(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Any:
        if self.script.rawhttp:
            return AMLRequest(method, path, query, _visible(headers), body)
        if method == "GET":
            return dict(parse_qsl(query, keep_blank_values=True))
        if self.script.schema is not None:
            return _schema_input(self.script.schema, headers, body)
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadInput(400, "the request body is not valid UTF-8 text") from None

    async def _call(self, argument: Any) -> Any:
        """run() when it is async, or on the run thread when signals cannot interrupt it."""
        script = self.script
        kwargs = argument if isinstance(argument, _Kwargs) else None
        if script.is_async:
            call = script.run(**kwargs) if kwargs is not None else script.run(argument)
            return await asyncio.wait_for(call, self.timeout_s)
        loop = asyncio.get_running_loop()
        if kwargs is not None:
            future = loop.run_in_executor(self._executor, lambda: script.run(**kwargs))
        else:
            future = loop.run_in_executor(self._executor, script.run, argument)
        try:
            return await asyncio.wait_for(future, self.timeout_s)
        except TimeoutError:
            # The stuck run() cannot be stopped; leave its thread behind and carry on in a
            # fresh one, so that the worker keeps serving.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="score-run")
            raise

    def _run_inline(self, argument: Any) -> Any:
        """Run a synchronous run() on the worker's own (main) thread; a watchdog thread
        interrupts it with SIGALRM once SCORING_TIMEOUT_MS has passed.

        Handing each request to a thread and back cost about a fifth of a worker's time: on
        the MLP entry script, 3.5-3.6k requests/s through the thread against 4.2-4.5k inline
        (wrk, concurrency 8, one worker). The worker serves one request at a time either way.
        Arming a timer per request would cost two system calls; the watchdog costs none.
        """
        self._deadline = time.monotonic() + self.timeout_s
        self._run_number += 1
        try:
            if isinstance(argument, _Kwargs):
                return self.script.run(**argument)
            return self.script.run(argument)
        except _AlarmTimeout:
            raise TimeoutError from None
        finally:
            self._run_number += 1  # an alarm landing after this point is ignored

    def _on_alarm(self, signum: int, frame: object) -> None:
        if self._run_number % 2 and self._alarm_for == self._run_number:
            raise _AlarmTimeout  # a BaseException: run()'s own `except Exception` lets it by

    def _watchdog(self) -> None:
        main = threading.main_thread().ident
        assert main is not None
        period = min(max(self.timeout_s / 20, 0.005), 0.25)
        while not self._closed.wait(period):
            running = self._run_number
            if running % 2 and running != self._alarm_for and time.monotonic() > self._deadline:
                self._alarm_for = running
                signal.pthread_kill(main, signal.SIGALRM)

    # -- helpers ------------------------------------------------------------------------------

    def _not_allowed(self, method: str, path: str, allow: str) -> Reply:
        return message_reply(
            405, f"the method {method} is not allowed for {path}", [("Allow", allow)]
        )

    def _add_cors(self, reply: Reply, headers: Mapping[str, str]) -> Reply:
        origin = headers.get("origin")
        if origin and self.origins and ("*" in self.origins or origin in self.origins):
            reply.headers.append(("Access-Control-Allow-Origin", origin))
        return reply


def _in_message_shape(reply: Reply) -> Reply:
    """The auth layer answers ``{"error": ...}``; this server speaks ``{"message": ...}``."""
    try:
        message = str(orjson.loads(reply.body).get("error", ""))
    except (orjson.JSONDecodeError, AttributeError):
        return reply
    return message_reply(reply.status, message, list(reply.headers))


_Route = Callable[
    [ScoringHandlers, str, str, Mapping[str, str], bytes], Reply | Coroutine[Any, Any, Reply]
]
_ROUTES: dict[str, _Route] = {
    "/": ScoringHandlers._health,
    "/score": ScoringHandlers._score_route,
    "/swagger.json": ScoringHandlers._swagger,
}


class _BadInput(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Kwargs(dict):
    """JSON keys as keyword arguments of an ``inference_schema``-decorated ``run``."""


def _schema_input(schema: Mapping[str, Any], headers: Mapping[str, str], body: bytes) -> _Kwargs:
    content_type = headers.get("content-type", _JSON).split(";", 1)[0].strip().lower()
    if content_type and content_type != _JSON:
        raise _BadInput(415, f"the content type {content_type} is not supported; send JSON")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _BadInput(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _BadInput(400, "the request body must be a JSON object of run()'s parameters")
    missing = [name for name in schema["required"] if name not in data]
    if missing:
        raise _BadInput(400, f"missing input: {', '.join(missing)}")
    unknown = [name for name in data if name not in schema["params"]]
    if unknown and not schema["open"]:
        raise _BadInput(400, f"unexpected input: {', '.join(unknown)}")
    for name, default in schema["defaults"].items():
        data.setdefault(name, default)
    return _Kwargs(data)


def _is_conversion_error(exc: Exception) -> bool:
    """``inference_schema`` refuses input that does not fit a parameter type this way."""
    return isinstance(exc, ValueError) and str(exc).startswith("Invalid input")


def _visible(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != QUERY_KEY}


def _encode(result: Any, headers: list[tuple[str, str]], request_id: str) -> Reply:
    """AMLResponse passes through; anything else is JSON-encoded with 200."""
    if isinstance(result, AMLResponse) or _looks_like_response(result):
        content_type = _JSON
        extra = list(headers)
        for name, value in dict(result.headers).items():
            if name.lower() == "content-type":
                content_type = str(value)
            else:
                extra.append((str(name), str(value)))
        data = result.get_data() if hasattr(result, "get_data") else result.data
        return Reply(int(result.status_code), bytes(data), content_type, extra)
    try:
        body = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        try:
            body = json.dumps(result, default=_fallback).encode()
        except (TypeError, ValueError) as exc:
            logger.error("request %s: run() returned a value JSON cannot encode", request_id)
            return message_reply(500, f"run() returned a value that is not JSON: {exc}", headers)
    return Reply(200, body, _JSON, headers)


def _looks_like_response(result: Any) -> bool:
    # The real azureml AMLResponse (a werkzeug Response) when that package is installed.
    return type(result).__name__ == "AMLResponse" and hasattr(result, "status_code")


def _fallback(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _AlarmTimeout(BaseException):
    """Raised inside run() by SIGALRM when SCORING_TIMEOUT_MS has passed."""


def _can_run_inline() -> bool:
    """POSIX signals can be sent to a thread, and this is the main thread, where signal
    handlers run."""
    return (
        hasattr(signal, "pthread_kill")
        and hasattr(signal, "SIGALRM")
        and threading.current_thread() is threading.main_thread()
    )


_ids = random.Random()  # seeded from the OS once per process
_UUID4_BITS = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant
_UUID4_MASK = ((1 << 128) - 1) ^ ((0xF << 76) | (0x3 << 62))


def _new_request_id() -> str:
    """A random (version 4) UUID in its usual text form. Request ids need no cryptographic
    randomness (``uuid.uuid4`` makes a getrandom system call per request), and formatting the
    number here costs a third of building a ``uuid.UUID``."""
    h = "%032x" % (_ids.getrandbits(128) & _UUID4_MASK | _UUID4_BITS)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
