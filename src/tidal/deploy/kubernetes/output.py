"""Rendered objects as text: a YAML stream (``-o yaml``) or a JSON ``List`` (``-o json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["to_json", "to_yaml"]


def to_yaml(objects: Sequence[dict[str, Any]]) -> str:
    """One YAML document per object, in order, keys in the order they were built."""
    import yaml  # PyYAML: imported here so ``import tidal`` stays light

    class _Dumper(yaml.SafeDumper):
        pass

    def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Multi-line values (a keys file, an entry script) read best as literal blocks; the
        # emitter falls back to a quoted scalar where a block cannot hold the text exactly.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _text)
    return yaml.dump_all(
        list(objects),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
        width=100,
        allow_unicode=True,
    )


def to_json(objects: Sequence[dict[str, Any]]) -> str:
    """A ``v1/List`` holding the objects, the form ``kubectl get -o json`` prints."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}, indent=2) + "\n"
