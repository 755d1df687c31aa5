"""Time as the services see it: UTC, millisecond precision (as stored and sent)."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from shared.domain.instants import from_ms, to_ms

Clock = Callable[[], datetime]

__all__ = ["Clock", "from_ms", "new_id", "to_ms", "utcnow"]


def utcnow() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_id() -> str:
    return str(uuid.uuid4())
