"""The attempts port: a code's fulfillment attempts and their timers (see
`domain.attempts`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.domain.model import AttemptState, Code, CodeRef
from shared.domain.states import CodeState


@dataclass(frozen=True)
class Due:
    """A code whose timer fell due, as it was when taken."""

    ref: CodeRef
    code: Code


@dataclass(frozen=True)
class Timers:
    """The codes (and shared-code instances) with a timer set, and those of them due."""

    pending: int
    due: int


class Attempts(Protocol):
    async def update_attempt(
        self,
        ref: CodeRef,
        *,
        redemption_id: str,
        attempt: int,
        state: CodeState,
        fields: Mapping[str, Any],
        attempt_state: AttemptState | None = None,
    ) -> Code | None:
        """Set `Code` attributes of a redemption's current attempt, without a change of
        state (so without an event): only if the code holds `redemption_id`, on
        `attempt`, in `state` (and, when given, in `attempt_state`). Returns the code
        as changed, or None."""

    async def take_due(self, now: datetime, lease_s: float, *, limit: int) -> list[Due]:
        """Up to `limit` codes whose `timer_at` is due at `now`: earliest first, taking
        personal codes and shared-code instances in turn so that neither starves.

        Each is taken atomically: its timer moves to `attempts.lease(code, now,
        lease_s)`, so no other worker takes it until the lease ends.
        """

    async def timers(self, now: datetime) -> Timers:
        """How many timers are set, and how many of them are due at `now` (a timer that a
        worker holds under its lease counts as set, not due, until the lease ends)."""
