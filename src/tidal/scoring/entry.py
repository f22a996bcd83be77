"""Loading an entry script (``score.py``) by path and describing how its ``run`` is called."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tidal.scoring.settings import ScoreSettings
from tidal.scoring.shims import is_rawhttp

__all__ = ["EntryScript", "EntryScriptError", "load_entry_script", "set_azureml_env"]

_MODULE_NAME = "score"  # the name Azure ML's server gives the entry script module


class EntryScriptError(Exception):
    """The script could not be imported, has no ``run``, or its ``init()`` failed."""


@dataclasses.dataclass(frozen=True)
class EntryScript:
    """A loaded script: its ``run`` and how to call it."""

    module: types.ModuleType
    run: Callable[..., Any]
    is_async: bool
    rawhttp: bool
    schema: Any = None  # an ``inference_schema`` wrapper, when ``run`` is decorated with it


def set_azureml_env(settings: ScoreSettings) -> None:
    """The variables Azure ML's server sets for the script, before it is imported."""
    script = Path(settings.entry_script)
    os.environ["AZUREML_MODEL_DIR"] = settings.model_dir
    os.environ["AZUREML_ENTRY_SCRIPT"] = str(script)
    os.environ.setdefault("AML_APP_ROOT", str(script.parent))
    os.environ["WORKER_COUNT"] = str(settings.worker_count)
    os.environ["SCORING_TIMEOUT_MS"] = str(settings.scoring_timeout_ms)


def load_entry_script(path: str) -> EntryScript:
    """Import PATH as module ``score``, check ``run`` and call ``init()`` once."""
    script = Path(path)
    root = str(script.parent)
    if root not in sys.path:
        sys.path.insert(0, root)  # the script's own helper modules import next to it
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, script)
    if spec is None or spec.loader is None:
        raise EntryScriptError(f"cannot load '{script}' as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        raise EntryScriptError(f"importing the entry script '{script}' failed: {exc!r}") from exc
    run = getattr(module, "run", None)
    if not callable(run):
        raise EntryScriptError(f"the entry script '{script}' defines no run() function")
    init = getattr(module, "init", None)
    if callable(init):
        try:
            result = init()
            if inspect.isawaitable(result):
                import asyncio

                asyncio.run(_await(result))
        except BaseException as exc:
            raise EntryScriptError(f"init() of the entry script failed: {exc!r}") from exc
    target = inspect.unwrap(run)
    return EntryScript(
        module=module,
        run=run,
        is_async=inspect.iscoroutinefunction(run) or inspect.iscoroutinefunction(target),
        rawhttp=is_rawhttp(run),
        schema=_schema_of(run),
    )


async def _await(value: Any) -> Any:
    return await value


def _schema_of(run: Callable[..., Any]) -> Any:
    """``inference_schema`` keeps the decorated function's schema in its own registry."""
    if "inference_schema" not in sys.modules:
        return None
    try:
        from inference_schema.schema_util import get_input_schema, get_output_schema
    except ImportError:
        return None
    try:
        inputs = get_input_schema(run)
        outputs = get_output_schema(run)
    except Exception:
        return None
    if not inputs and not outputs:
        return None
    try:
        signature = inspect.signature(inspect.unwrap(run))
    except (TypeError, ValueError):
        signature = None
    params = signature.parameters.values() if signature is not None else ()
    named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return {
        "input": inputs,
        "output": outputs,
        "params": [p.name for p in params],
        "required": [p.name for p in named if p.default is p.empty],
        # inference_schema needs every declared parameter passed: defaults are filled in
        "defaults": {p.name: p.default for p in named if p.default is not p.empty},
        "open": any(p.kind is p.VAR_KEYWORD for p in params),
    }
