"""The codes port: personal codes and shared-code instances, their transitions, and
the operator's operations over a campaign's codes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from shared.domain.model import Change, Code, CodeRef
from shared.domain.states import CodeState


class Codes(Protocol):
    """Every state transition is one atomic conditional write that also records the
    transition's event; nothing is read before it is written to decide it."""

    async def add_code(self, code: Code) -> None:
        """Store a new code; SCAN_CODE_EXISTS if its campaign has it already."""

    async def get_code(self, ref: CodeRef) -> Code | None: ...

    async def find_codes(self, key: str, *, limit: int) -> list[Code]:
        """Personal codes of any campaign with this key (`CodeKeys`)."""

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

    async def set_custom_code_info(
        self, code_type: str, key: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code | None:
        """Replace `customCodeInfo` if the code is at `version`; None if not."""

    async def redeemed_codes(self, user_id: str, code_type: str | None) -> list[Code]: ...

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
