"""The redemptions port: each RedeemCode request, its outcome and who waits for it."""

from __future__ import annotations

from typing import Protocol

from shared.domain.model import Place, Redemption, ReplyTo


class Redemptions(Protocol):
    async def open_redemption(self, redemption: Redemption) -> Redemption | None:
        """Record a new redemption; if its id exists, return the stored one instead."""

    async def get_redemption(self, redemption_id: str) -> Redemption | None: ...

    async def add_reply(self, redemption_id: str, reply: ReplyTo) -> None:
        """Ask for the outcome of a redemption to be sent (again) to `reply`."""

    async def key_redemption(self, redemption_id: str, key: str) -> None:
        """Record the key of the code a redemption found (one that named no campaign is
        opened under its code's hashed key), before it may hold the code."""

    async def finish_redemption(self, redemption: Redemption) -> Redemption:
        """Record the outcome; the first recorded terminal outcome wins and is returned."""

    async def recent_redemptions(
        self, code_type: str | None, *, limit: int, after: Place | None
    ) -> list[Redemption]:
        """Redemption attempts in the order of `Place`, those after `after`."""
