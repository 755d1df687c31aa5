"""The failure windows port: each throttled scope's recent counted attempts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from shared.domain.throttling import FailureWindow, Limit

WindowChange = Callable[[FailureWindow], FailureWindow]


class FailureWindows(Protocol):
    async def failure_windows(self, scopes: Sequence[str]) -> list[FailureWindow]:
        """The stored windows of these scopes; a scope without one is left out."""

    async def change_failure_window(
        self, scope: str, limit: Limit, change: WindowChange
    ) -> FailureWindow:
        """`change` applied to the scope's window as stored (an empty one under `limit`
        if there is none), atomically: no other change comes between the read and
        the write. Returns the window as it stands after."""

    async def clear_failure_window(self, scope: str) -> bool:
        """Forget the scope's window; whether there was one."""

    async def live_failure_windows(
        self, now: datetime, *, after: str | None = None, limit: int = 100
    ) -> list[FailureWindow]:
        """Windows with an entry still inside them at `now`, by scope, after `after`."""
