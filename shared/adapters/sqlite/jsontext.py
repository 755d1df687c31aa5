"""Documents as JSON text in SQLite: instants tagged as `{"$date": ms}`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.adapters.documents import Doc
from shared.clock import from_ms, to_ms


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return {"$date": to_ms(value)}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> object:
    """An instant from its tag `{"$date": ms}`; any other object as it is.

    No key of a caller's map is stored with a `$` (`documents.escaped`), so a
    tag is always an instant. Files of the previous format may hold a caller's
    own `{"$date": x}`: it stays a map unless x is a whole number of
    milliseconds in range (and `documents.unescaped` gives those back as maps).
    """
    ms = obj.get("$date") if len(obj) == 1 else None
    if type(ms) is not int:
        return obj
    try:
        return from_ms(ms)
    except (OverflowError, ValueError, OSError):
        return obj


def dumps(doc: Doc) -> str:
    return json.dumps(doc, default=_encode, separators=(",", ":"))


def loads(text: str) -> Doc:
    doc: Doc = json.loads(text, object_hook=_decode)
    return doc
