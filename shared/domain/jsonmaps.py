"""The bounds of a caller's free-form JSON (`customCodeInfo`, `customRedemptionInfo`, ...).

Whatever is within them every store holds and gives back unchanged: BSON
takes integers of 64 bits at most and documents nested 100 deep at most
(a map is stored a few levels down), neither JSON nor the events sent carry
NaN or infinities, and MongoDB and UTF-8 refuse text with lone surrogates.
"""

from __future__ import annotations

import json
import math
from typing import TypeVar

MAX_DEPTH = 32
MAX_KEYS = 256
MAX_BYTES = 16 * 1024
MIN_INT, MAX_INT = -(2**63), 2**63 - 1

T = TypeVar("T")


def checked(value: T) -> T:
    """`value` if it is JSON within the bounds; ValueError saying why not."""
    keys = 0
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list) and depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            keys += len(item)
            if not all(isinstance(key, str) for key in item):
                raise ValueError("has a key that is not a string")
            pending += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            pending += [(v, depth + 1) for v in item]
        else:
            _check_scalar(item)
        if keys > MAX_KEYS:
            raise ValueError(f"has more than {MAX_KEYS} keys")
    _check_size(value)
    return value


def _check_scalar(item: object) -> None:
    if isinstance(item, bool) or item is None or isinstance(item, str):
        return
    if isinstance(item, int):
        if not MIN_INT <= item <= MAX_INT:
            raise ValueError(f"has an integer outside [{MIN_INT}, {MAX_INT}]")
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise ValueError("has a number that is not finite (NaN or infinity)")
    else:
        raise ValueError(f"has a value that is not JSON ({type(item).__name__})")


def _check_size(value: object) -> None:
    try:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    except UnicodeEncodeError:
        raise ValueError("has text that is not valid Unicode (a lone surrogate)") from None
    if size > MAX_BYTES:
        raise ValueError(f"is larger than {MAX_BYTES} bytes as JSON")
