"""Modules entry scripts import, provided in the worker only when the real ones are absent.

* ``azureml.contrib.services.aml_request`` (``AMLRequest``, ``rawhttp``) and
  ``azureml.contrib.services.aml_response`` (``AMLResponse``): the raw-request contract of Azure
  ML's inference server. Injected into ``sys.modules`` so that no top-level ``azureml`` package
  is installed that could shadow the real one.
* ``tritonhttpclient`` / ``tritonclientutils``: the old client module names the Azure docs use,
  as lazy aliases of ``tritonclient.http`` / ``tritonclient.utils``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson

__all__ = ["AMLRequest", "AMLResponse", "install", "is_rawhttp", "rawhttp"]

F = TypeVar("F", bound=Callable[..., Any])
_RAWHTTP = "_tidal_rawhttp"


def rawhttp(func: F) -> F:
    """Mark ``run`` as taking the whole request (an ``AMLRequest``) instead of its body."""
    setattr(func, _RAWHTTP, True)
    return func


def is_rawhttp(func: Callable[..., Any]) -> bool:
    # The real Azure decorator wraps ``run``; its wrapper is recognised by its module.
    if getattr(func, _RAWHTTP, False):
        return True
    return "azureml.contrib.services" in (getattr(func, "__module__", "") or "")


class _Headers(dict[str, str]):
    """Request headers, looked up case-insensitively (they are stored lower-case)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class AMLRequest:
    """The request as a ``rawhttp`` ``run`` sees it: a small subset of werkzeug's ``Request``."""

    def __init__(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query.encode("latin-1")
        self.full_path = f"{path}?{query}"
        self.headers = _Headers(headers)
        self.args = dict(parse_qsl(query, keep_blank_values=True))
        self.data = body
        self.content_type = headers.get("content-type", "")
        self.mimetype = self.content_type.split(";", 1)[0].strip().lower()
        self.content_length = len(body)

    def get_data(self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False):
        return self.data.decode("utf-8", "replace") if as_text else self.data

    def get_json(self, force: bool = False, silent: bool = False) -> Any:
        if not force and self.mimetype != "application/json":
            if silent:
                return None
            raise ValueError("the request content type is not application/json")
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError:
            if silent:
                return None
            raise

    @property
    def json(self) -> Any:
        return self.get_json(silent=True)


class AMLResponse:
    """A response ``run`` returns as is: body, status, headers; ``json_str`` JSON-encodes it."""

    def __init__(
        self,
        message: Any,
        status_code: int = 200,
        response_headers: Mapping[str, str] | None = None,
        json_str: bool = False,
    ) -> None:
        self.status_code = int(status_code)
        self.headers: dict[str, str] = dict(response_headers or {})
        if json_str:
            self.data = orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY)
            self.headers.setdefault("Content-Type", "application/json")
        elif isinstance(message, bytes | bytearray):
            self.data = bytes(message)
        else:
            self.data = str(message if message is not None else "").encode("utf-8")

    def get_data(self, as_text: bool = False) -> bytes | str:
        return self.data.decode("utf-8", "replace") if as_text else self.data

    @property
    def status(self) -> str:
        return str(self.status_code)


class _LazyAlias(types.ModuleType):
    """A module whose attributes are those of TARGET, imported on first use."""

    def __init__(self, name: str, target: str) -> None:
        super().__init__(name, f"alias of {target}")
        self.__dict__["_target"] = target

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__dict__["_target"])
        return getattr(module, attr)


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    return module


def install() -> list[str]:
    """Put the missing modules into ``sys.modules``; returns the names provided."""
    provided: list[str] = []
    if _missing("azureml.contrib.services.aml_request"):
        request = _module(
            "azureml.contrib.services.aml_request", AMLRequest=AMLRequest, rawhttp=rawhttp
        )
        response = _module("azureml.contrib.services.aml_response", AMLResponse=AMLResponse)
        chain = ["azureml", "azureml.contrib", "azureml.contrib.services"]
        for parent, child in zip(chain, [*chain[1:], None], strict=True):
            if parent not in sys.modules and _missing(parent):
                module = _module(parent)
                module.__path__ = []  # a package, so that its submodules import
                sys.modules[parent] = module
                provided.append(parent)
            if child is None:
                break
        services = sys.modules["azureml.contrib.services"]
        services.aml_request = request  # type: ignore[attr-defined]
        services.aml_response = response  # type: ignore[attr-defined]
        sys.modules[request.__name__] = request
        sys.modules[response.__name__] = response
        provided += [request.__name__, response.__name__]
    aliases = {"tritonhttpclient": "tritonclient.http", "tritonclientutils": "tritonclient.utils"}
    for name, target in aliases.items():
        if name not in sys.modules and _missing(name) and not _missing(target):
            sys.modules[name] = _LazyAlias(name, target)
            provided.append(name)
    return provided
