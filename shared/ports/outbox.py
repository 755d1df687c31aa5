"""The outbox port: what waits to go out, written in the same write as the change it
tells of: codes' events, and outcomes for callers who asked for a reply."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from shared.domain.model import Code, CodeEvent, Redemption


@dataclass(frozen=True)
class PendingEvent:
    """An event waiting in a code's outbox, with the code as of that event."""

    event: CodeEvent
    code: Code
    trace: Mapping[str, str] = field(default_factory=dict)
    """The trace context the event was written in (`shared.tracing`), for its relay."""
    accepted_at: datetime | None = None
    """When the redemption that wrote it was accepted, if a worker's job wrote it."""


@dataclass(frozen=True)
class PendingEvents:
    """The unrelayed events of one code (or shared-code instance), oldest first."""

    code_id: str
    events: tuple[PendingEvent, ...]
    source: str = ""
    """Where the store keeps this outbox: its own tag, handed back to `mark_relayed`."""


@dataclass(frozen=True)
class Backlog:
    """What waits in the outboxes: how many events, and when the oldest occurred."""

    events: int
    oldest: datetime | None


class Outbox(Protocol):
    async def pending_events(self, *, limit: int) -> list[PendingEvents]:
        """Codes with unrelayed events, each with its events in order; the codes whose
        events have waited longest first. Events of deleted codes are still here."""

    async def mark_relayed(self, relayed: Sequence[PendingEvents]) -> None:
        """Drop relayed events from their outboxes."""

    async def backlog(self) -> Backlog:
        """The events waiting to be relayed (not those set aside as unreadable, which wait
        for an operator: `redemption_unreadable_documents` counts them)."""

    async def pending_replies(self, *, limit: int) -> list[Redemption]:
        """Terminal redemptions with callers still waiting to be told."""

    async def mark_replied(self, replied: Sequence[Redemption]) -> None:
        """Drop the replies sent for these redemptions."""
