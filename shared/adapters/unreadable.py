"""Stored documents that cannot be read back: set aside, logged and counted.

One such document must never stall the relay, the timers or an export for
everybody else; what it held is left in the store for an operator to mend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import structlog
from prometheus_client import Counter

T = TypeVar("T")
log = structlog.get_logger()
SET_ASIDE = Counter(
    "redemption_unreadable_documents",
    "Stored documents that could not be read and were set aside",
    ["what"],
)


def set_aside(what: str, key: object, error: Exception) -> None:
    """Record that the stored `what` at `key` could not be read because of `error`."""
    SET_ASIDE.labels(what).inc()
    log.error("unreadable document set aside", what=what, key=str(key), error=repr(error))


def readable(rows: Iterable[tuple[Any, Any]], decode: Callable[[Any], T], what: str) -> Iterator[T]:
    """Each `(key, stored)` row decoded, those that cannot be set aside."""
    for key, stored in rows:
        try:
            yield decode(stored)
        except Exception as error:
            set_aside(what, key, error)
