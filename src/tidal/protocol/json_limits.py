"""Limits checked on request JSON before it is parsed.

orjson parses nesting recursively: a few megabytes of ``[`` crash the process. Triton refuses
JSON nested deeper than 100 levels; so does tidal, before handing the text to a parser.
"""

from __future__ import annotations

import re

import numpy as np

from tidal.core.errors import InferenceError

MAX_JSON_NESTING_DEPTH = 100

_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def check_json_depth(text: bytes | memoryview, limit: int = MAX_JSON_NESTING_DEPTH) -> None:
    """Raise INVALID_ARG when ``text`` nests arrays and objects deeper than ``limit``."""
    data = bytes(text) if isinstance(text, memoryview) else text
    # Fast path, vectorised: fewer opening brackets in all than the limit cannot nest beyond
    # it. "[" is 0x5B and "{" 0x7B; setting bit 0x20 maps both, and no other byte, to 0x7B.
    if np.count_nonzero((np.frombuffer(data, np.uint8) | 0x20) == 0x7B) <= limit:
        return
    if _max_depth(data) <= limit:
        return
    # Brackets inside strings counted too: look again without the strings (rare and slower).
    if _max_depth(_JSON_STRING.sub(b'""', data)) > limit:
        raise InferenceError.invalid(f"JSON nesting depth exceeds maximum allowed ({limit})")


def _max_depth(data: bytes) -> int:
    codes = np.frombuffer(data, np.uint8)
    opens = (codes == _OPEN[0]) | (codes == _OPEN[1])
    closes = (codes == _CLOSE[0]) | (codes == _CLOSE[1])
    positions = np.flatnonzero(opens | closes)
    if positions.size == 0:
        return 0
    steps = np.where(opens[positions], 1, -1).astype(np.int32)
    return int(np.cumsum(steps).max())
