"""Instants as stored and sent: UTC milliseconds since the epoch."""

from datetime import UTC, datetime


def to_ms(instant: datetime | None) -> int | None:
    return None if instant is None else round(instant.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
