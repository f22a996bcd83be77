"""Matching v2 REST paths to route names, without a web framework in the hot path."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from tidal.core.errors import InferenceError


@dataclass(frozen=True, slots=True)
class Route:
    """A matched path: which endpoint, for which model and version (if any)."""

    name: str
    model: str = ""
    version: int | None = None


# endpoint name -> the one method it answers
METHODS: dict[str, str] = {
    "server_metadata": "GET",
    "health_live": "GET",
    "health_ready": "GET",
    "model_metadata": "GET",
    "model_ready": "GET",
    "model_config": "GET",
    "model_infer": "POST",
    "model_statistics": "GET",
    "repository_index": "POST",
    "repository_load": "POST",
    "repository_unload": "POST",
}

_MODEL_ACTIONS = {
    "ready": "model_ready",
    "config": "model_config",
    "infer": "model_infer",
    "stats": "model_statistics",
}


def match_route(path: str) -> Route | None:
    """The route for a path, or None when no endpoint has that path."""
    parts = path.strip("/").split("/")
    if not parts or parts[0] != "v2":
        return None
    rest = parts[1:]
    if not rest:
        return Route("server_metadata")
    if rest[0] == "health" and len(rest) == 2 and rest[1] in ("live", "ready"):
        return Route(f"health_{rest[1]}")
    if rest[0] == "repository":
        return _repository_route(rest[1:])
    if rest[0] != "models" or len(rest) < 2 or not rest[1]:
        return None
    if rest[1] == "stats" and len(rest) == 2:
        return Route("model_statistics")
    model = unquote(rest[1])
    tail = rest[2:]
    version = None
    if len(tail) >= 2 and tail[0] == "versions":
        version = _version(model, unquote(tail[1]))
        tail = tail[2:]
    if not tail:
        return Route("model_metadata", model, version)
    if len(tail) == 1 and tail[0] in _MODEL_ACTIONS:
        return Route(_MODEL_ACTIONS[tail[0]], model, version)
    return None


def route_method(path: str) -> str | None:
    """The method of the endpoint ``path`` has the shape of, even where ``match_route``
    refuses its version or repository part; None when no endpoint has that shape."""
    parts = path.strip("/").split("/")
    if len(parts) >= 5 and parts[:2] == ["v2", "models"] and parts[3] == "versions":
        parts[4] = "1"  # any version: only the shape counts here
    elif len(parts) >= 4 and parts[:2] == ["v2", "repository"] and parts[2] != "models":
        del parts[2]  # a repository name
    try:
        route = match_route("/".join(parts))
    except InferenceError:
        return None
    return METHODS[route.name] if route is not None else None


def _repository_route(rest: list[str]) -> Route | None:
    """``index``, ``models/{m}/load``, ``models/{m}/unload``; Triton's optional repository
    name before them is recognised and refused."""
    if rest == ["index"]:
        return Route("repository_index")
    if len(rest) == 3 and rest[0] == "models" and rest[1] and rest[2] in ("load", "unload"):
        return Route(f"repository_{rest[2]}", unquote(rest[1]))
    if (len(rest) == 2 and rest[1] == "index") or (
        len(rest) == 4 and rest[1] == "models" and rest[2] and rest[3] in ("load", "unload")
    ):
        raise InferenceError.unsupported("'repository_name' specification is not supported")
    return None


def _version(model: str, text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise InferenceError.invalid(
            f"model '{model}': version '{text}' in the path must be a non-negative integer"
        )
    return int(text)
