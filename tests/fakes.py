"""In-memory stand-ins for the ports, with the same atomic semantics (for unit tests)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from shared.domain import model
from shared.domain.model import Campaign, Change, Code, Redemption, ReplyTo
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import normalise
from shared.ports import PendingEvent, PendingEvents, Store


class FakeStore:
    def __init__(self) -> None:
        self.campaigns: dict[str, Campaign] = {}
        self.codes: dict[tuple[str, str], Code] = {}
        self.outbox: dict[str, list[PendingEvent]] = {}
        self.redemptions: dict[str, Redemption] = {}

    async def prepare(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def create_campaign(self, campaign: Campaign) -> None:
        if campaign.code_type in self.campaigns:
            raise DomainError(ReasonCode.CODE_TYPE_EXISTS, "exists")
        self.campaigns[campaign.code_type] = campaign

    async def get_campaign(self, code_type: str) -> Campaign | None:
        return self.campaigns.get(code_type)

    async def list_campaigns(self, *, skip: int, limit: int) -> list[Campaign]:
        return [self.campaigns[k] for k in sorted(self.campaigns)][skip : skip + limit]

    async def count_campaigns(self) -> int:
        return len(self.campaigns)

    async def add_code(self, code: Code) -> None:
        key = (code.code_type, normalise(code.scan_code))
        if key in self.codes:
            raise DomainError(ReasonCode.SCAN_CODE_EXISTS, "exists")
        self.codes[key] = code

    async def get_code(self, code_type: str, scan_norm: str) -> Code | None:
        return self.codes.get((code_type, scan_norm))

    async def find_codes(self, scan_norm: str, *, limit: int) -> list[Code]:
        return [c for (_, norm), c in self.codes.items() if norm == scan_norm][:limit]

    async def apply(
        self,
        code_type: str,
        scan_norm: str,
        changes: Sequence[Change],
        *,
        redemption_id: str | None = None,
        version: int | None = None,
    ) -> Code | None:
        code = self.codes.get((code_type, scan_norm))
        if code is None or not model.expected(code, changes, redemption_id, version):
            return None
        for change in changes:
            code = model.applied(code, change)
            snapshot = dataclasses.replace(code, history=())
            self.outbox.setdefault(code.redemption_code_id, []).append(
                PendingEvent(change.event, snapshot)
            )
        self.codes[(code_type, scan_norm)] = code
        return code

    async def set_custom_code_info(
        self, code_type: str, scan_norm: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code | None:
        code = self.codes.get((code_type, scan_norm))
        if code is None or code.version != version:
            return None
        code = dataclasses.replace(code, custom_code_info=dict(info), version=version + 1)
        self.codes[(code_type, scan_norm)] = code
        return code

    async def redeemed_codes(self, user_id: str, code_type: str | None) -> list[Code]:
        return [
            c
            for c in self.codes.values()
            if c.redeemed_by_user_id == user_id
            and c.code_state.value == "Redeemed"
            and code_type in (None, c.code_type)
        ]

    async def open_redemption(self, redemption: Redemption) -> Redemption | None:
        existing = self.redemptions.get(redemption.redemption_id)
        if existing is None:
            self.redemptions[redemption.redemption_id] = redemption
        return existing

    async def add_reply(self, redemption_id: str, reply: ReplyTo) -> None:
        r = self.redemptions[redemption_id]
        self.redemptions[redemption_id] = dataclasses.replace(r, replies=(*r.replies, reply))

    async def finish_redemption(self, redemption: Redemption) -> Redemption:
        stored = self.redemptions[redemption.redemption_id]
        if stored.status.is_terminal:
            return stored
        finished = dataclasses.replace(redemption, replies=stored.replies)
        self.redemptions[redemption.redemption_id] = finished
        return finished

    async def get_redemption(self, redemption_id: str) -> Redemption | None:
        return self.redemptions.get(redemption_id)

    async def pending_events(self, *, limit: int) -> list[PendingEvents]:
        items = [PendingEvents(k, tuple(v)) for k, v in self.outbox.items() if v]
        return items[:limit]

    async def mark_relayed(self, relayed: Sequence[PendingEvents]) -> None:
        for item in relayed:
            sent = {p.event.event_id for p in item.events}
            self.outbox[item.code_id] = [
                p for p in self.outbox[item.code_id] if p.event.event_id not in sent
            ]

    async def pending_replies(self, *, limit: int) -> list[Redemption]:
        return [r for r in self.redemptions.values() if r.status.is_terminal and r.replies][:limit]

    async def mark_replied(self, replied: Sequence[Redemption]) -> None:
        for r in replied:
            sent = set(r.replies)
            stored = self.redemptions[r.redemption_id]
            remaining = tuple(x for x in stored.replies if x not in sent)
            self.redemptions[r.redemption_id] = dataclasses.replace(stored, replies=remaining)

    def events(self) -> list[str]:
        return [p.event.routing_key for pending in self.outbox.values() for p in pending]


def _typecheck(store: FakeStore) -> Store:
    return store  # mypy keeps the fake in step with the port
