"""The shared-code claims port: a user holds at most one instance of a shared code;
a campaign gives at most `maxRedemptions` slots, each held by one redemption until
it ends."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from shared.domain.model import Change, Code


class SharedClaims(Protocol):
    async def reserve_user(self, code_type: str, user_id: str, redemption_id: str) -> str:
        """Make `redemption_id` the user's one redemption of the campaign; returns the holder."""

    async def release_user(self, code_type: str, user_id: str, redemption_id: str) -> None:
        """Undo `reserve_user`, if `redemption_id` still holds it."""

    async def user_holder(self, code_type: str, user_id: str) -> str | None:
        """The redemption that holds the user's claim on the campaign, if any."""

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
