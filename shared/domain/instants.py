"""Instants as stored and sent: UTC milliseconds since the epoch."""

from datetime import UTC, datetime
from typing import overload


@overload
def to_ms(instant: datetime) -> int: ...
@overload
def to_ms(instant: None) -> None: ...
@overload
def to_ms(instant: datetime | None) -> int | None: ...
def to_ms(instant: datetime | None) -> int | None:
    return None if instant is None else round(instant.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
