"""The ports the services depend on; adapters implement them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.domain.model import (
    AttemptState,
    Campaign,
    CampaignFilter,
    Change,
    Code,
    CodeEvent,
    CodeRef,
    Job,
    Redemption,
    ReplyTo,
)
from shared.domain.states import CodeState

FulfillmentHandler = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True)
class PendingEvent:
    """An event waiting in a code's outbox, with the code as of that event."""

    event: CodeEvent
    code: Code


@dataclass(frozen=True)
class PendingEvents:
    """The unrelayed events of one code (or shared-code instance), oldest first."""

    code_id: str
    events: tuple[PendingEvent, ...]
    source: str = ""
    """Where the store keeps this outbox: its own tag, handed back to `mark_relayed`."""


@dataclass(frozen=True)
class Due:
    """A code whose timer fell due, as it was when taken."""

    ref: CodeRef
    code: Code


class Store(Protocol):
    """Campaigns, codes and redemptions, with the outbox of their events.

    Every state transition is one atomic conditional write that also records
    the transition's event; nothing is read before it is written to decide it.
    """

    async def prepare(self) -> None:
        """Create what the store needs (indexes, tables); idempotent."""

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def create_campaign(self, campaign: Campaign) -> None:
        """Store a new campaign; CODE_TYPE_EXISTS if the code type is taken."""

    async def get_campaign(self, code_type: str) -> Campaign | None: ...

    async def list_campaigns(
        self, where: CampaignFilter, *, skip: int, limit: int
    ) -> list[Campaign]:
        """Campaigns in code-type order."""

    async def count_campaigns(self, where: CampaignFilter) -> int: ...

    async def update_campaign(
        self, code_type: str, version: int, fields: Mapping[str, Any], now: datetime
    ) -> Campaign | None:
        """Set `Campaign` attributes if the campaign is at `version`; None if not."""

    async def find_shared_campaign(self, scan_norm: str) -> Campaign | None:
        """The shared campaign whose campaign-level scan code this is."""

    async def add_code(self, code: Code) -> None:
        """Store a new code; SCAN_CODE_EXISTS if its campaign has it already."""

    async def get_code(self, ref: CodeRef) -> Code | None: ...

    async def find_codes(self, scan_norm: str, *, limit: int) -> list[Code]:
        """Personal codes of any campaign with this normalised scan code."""

    async def apply(
        self,
        ref: CodeRef,
        changes: Sequence[Change],
        *,
        redemption_id: str | None = None,
        version: int | None = None,
        attempt: int | None = None,
    ) -> Code | None:
        """Apply `changes` in order, atomically, with their events.

        Only if the code is in the first change's source state (and, when
        given, holds `redemption_id`, is at `version` and on `attempt`);
        returns the code as changed, or None when it was not as expected.
        """

    # Fulfillment attempts and their timers (see `domain.attempts`)

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

    # Shared codes: a user holds at most one instance; a campaign gives at
    # most `maxRedemptions` slots, each held by one redemption until it ends.

    async def reserve_user(self, code_type: str, user_id: str, redemption_id: str) -> str:
        """Make `redemption_id` the user's one redemption of the campaign; returns the holder."""

    async def release_user(self, code_type: str, user_id: str, redemption_id: str) -> None:
        """Undo `reserve_user`, if `redemption_id` still holds it."""

    async def take_slot(self, code_type: str, redemption_id: str, now: datetime) -> bool:
        """Take one redemption of the campaign if it is open and not all taken.

        Idempotent per redemption: False only when no slot is, or was, taken.
        """

    async def release_slot(self, code_type: str, redemption_id: str, *, refund: bool) -> None:
        """The redemption ended: forget it, and give its slot back if `refund`."""

    async def add_instance(self, instance: Code, changes: Sequence[Change]) -> tuple[Code, bool]:
        """Store a user's instance with `changes` applied and their events.

        Returns it and whether it is new: if it exists already, nothing
        changes and the stored one is returned.
        """

    async def set_custom_code_info(
        self, code_type: str, scan_norm: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code | None:
        """Replace `customCodeInfo` if the code is at `version`; None if not."""

    async def redeemed_codes(self, user_id: str, code_type: str | None) -> list[Code]: ...

    # Bulk: generation jobs, import and export

    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        """Insert many codes; for each, whether it was new (False: its scan code exists)."""

    def codes_of(
        self, code_type: str, *, job_id: str | None = None, batch: int = 1000
    ) -> AsyncIterator[list[Code]]:
        """The campaign's codes (or one job's), in batches, in a stable order."""

    async def count_job_codes(self, job_id: str) -> int: ...

    async def create_job(self, job: Job) -> None: ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def update_job(self, job: Job) -> None:
        """Record a job's progress or end."""

    # Operator operations over a whole campaign

    async def inventory(self, code_type: str, *, shared: bool) -> dict[CodeState, int]:
        """How many codes (or shared-code instances) the campaign has in each state."""

    async def delete_codes(self, code_type: str) -> int:
        """Delete the campaign's codes that no redemption holds (none in progress, none
        with a timer running); how many went. Their events not yet relayed stay pending."""

    async def reset_codes(
        self, code_type: str, to: CodeState, reset_id: str, by: str, now: datetime
    ) -> int:
        """Reset every code no redemption holds to `to`, each with its history entry and
        event (id `<reset_id>:<redemptionCodeId>`); how many changed."""

    async def recent_redemptions(
        self, code_type: str | None, *, limit: int, before: datetime | None
    ) -> list[Redemption]:
        """Redemption attempts, newest first, accepted before `before`."""

    async def open_redemption(self, redemption: Redemption) -> Redemption | None:
        """Record a new redemption; if its id exists, return the stored one instead."""

    async def add_reply(self, redemption_id: str, reply: ReplyTo) -> None:
        """Ask for the outcome of a redemption to be sent (again) to `reply`."""

    async def finish_redemption(self, redemption: Redemption) -> Redemption:
        """Record the outcome; the first recorded terminal outcome wins and is returned."""

    async def get_redemption(self, redemption_id: str) -> Redemption | None: ...

    async def pending_events(self, *, limit: int) -> list[PendingEvents]:
        """Codes with unrelayed events, each with its events in order; the codes whose
        events have waited longest first. Events of deleted codes are still here."""

    async def mark_relayed(self, relayed: Sequence[PendingEvents]) -> None:
        """Drop relayed events from their outboxes."""

    async def pending_replies(self, *, limit: int) -> list[Redemption]:
        """Terminal redemptions with callers still waiting to be told."""

    async def mark_replied(self, replied: Sequence[Redemption]) -> None:
        """Drop the replies sent for these redemptions."""
