"""Operator operations on campaigns and codes (the service layer of the admin API)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from services.intake import queries
from services.intake.paging import PageQuery
from shared.clock import Clock
from shared.domain import model
from shared.domain.access import Grant
from shared.domain.codekeys import CodeKeys
from shared.domain.model import Campaign, Change, Code, CodeRef, NewId, new_code
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import checked
from shared.domain.states import Action, CodeState, target
from shared.ports import Store

MAX_SHARED_SCAN_CODE = 20
# How often an operator edit re-reads a code that changed under it.
_EDIT_ATTEMPTS = 5


class Admin:
    """Operator operations: campaigns, their codes, and changes to all of a campaign's codes."""

    def __init__(self, store: Store, clock: Clock, new_id: NewId, keys: CodeKeys) -> None:
        self._store = store
        self._clock = clock
        self._new_id = new_id
        self._keys = keys

    async def create_campaign(self, fields: Mapping[str, Any], grant: Grant) -> Campaign:
        grant.check_campaign(fields["code_type"])
        now = self._clock()
        campaign = Campaign(created_at=now, updated_at=now, **fields)
        campaign.check_window()
        if campaign.is_shared != (campaign.scan_code is not None):
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_TYPE_CODE_USE_ERROR,
                "a MULTI campaign needs its scanCode; a SINGLE one has none",
            )
        campaign.check_fulfillment()
        campaign.check_hashing()
        if campaign.hash_codes:
            self._keys.check_hashing()
        if campaign.scan_code is not None:
            campaign = dataclasses.replace(
                campaign, scan_code=_shared_scan_code(campaign.scan_code)
            )
        await self._store.create_campaign(campaign)
        return campaign

    async def campaign(self, code_type: str) -> Campaign:
        return await queries.campaign(self._store, code_type)

    async def campaigns(self, query: PageQuery, grant: Grant) -> tuple[list[Campaign], int]:
        """A page of the campaigns within the key's reach, and how many there are."""
        where = query.filter(self._clock())
        skip = (query.page - 1) * query.rows
        if grant.campaigns is not None:  # the few the key names: each read, then paged
            named = [await self._store.get_campaign(name) for name in sorted(grant.campaigns)]
            found = [c for c in named if c is not None and where.matches(c)]
            return found[skip : skip + query.rows], len(found)
        count = await self._store.count_campaigns(where)
        return await self._store.list_campaigns(where, skip=skip, limit=query.rows), count

    async def update_campaign(
        self, code_type: str, version: int, fields: Mapping[str, Any]
    ) -> Campaign:
        current = await self.campaign(code_type)
        if current.version != version:
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_VERSION_MISMATCH,
                f"campaign is at version {current.version}, not {version}",
            )
        changed = dataclasses.replace(current, **fields)
        changed.check_window()
        changed.check_fulfillment()
        updated = await self._store.update_campaign(code_type, version, fields, self._clock())
        if updated is None:
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_VERSION_MISMATCH, "campaign changed meanwhile"
            )
        return updated

    async def add_code(
        self, code_type: str, scan_code: str, state: CodeState, info: Mapping[str, Any] | None
    ) -> Code:
        campaign = await queries.personal_campaign(self._store, code_type)
        code = new_code(
            campaign.code_type,
            scan_code,
            state,
            info,
            now=self._clock(),
            new_id=self._new_id,
            keys=self._keys,
            hashed=campaign.hash_codes,
        )
        await self._store.add_code(code)
        return code

    async def code(self, code_type: str, scan_code: str, *, user: str | None = None) -> Code:
        """A personal campaign's code, or `user`'s instance of a shared campaign's."""
        ref = await self._ref(code_type, scan_code)
        code = await self._store.get_code(dataclasses.replace(ref, user_id=user) if user else ref)
        if code is None:
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_NOT_FOUND, f"campaign {code_type} has no such code"
            )
        return code

    async def activate(
        self, code_type: str, scan_code: str, info: Mapping[str, Any] | None, by: str
    ) -> Code:
        return await self._edit(
            code_type,
            scan_code,
            lambda code: model.activate(code, info, now=self._clock(), new_id=self._new_id, by=by),
        )

    async def invalidate(self, code_type: str, scan_code: str, reason: str | None, by: str) -> Code:
        return await self._edit(
            code_type,
            scan_code,
            lambda code: model.invalidate(
                code, reason, now=self._clock(), new_id=self._new_id, by=by
            ),
        )

    async def update_custom_info(
        self, code_type: str, scan_code: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code:
        code = await self.code(code_type, scan_code)
        model.check_version(code, version)
        updated = await self._store.set_custom_code_info(code_type, code.key, version, info, by)
        if updated is None:
            model.check_version(await self.code(code_type, scan_code), version)
            raise DomainError(ReasonCode.REDEMPTION_CODE_VERSION_MISMATCH, "code changed meanwhile")
        return updated

    async def inventory(self, code_type: str) -> tuple[Campaign, dict[CodeState, int]]:
        campaign = await self.campaign(code_type)
        return campaign, await self._store.inventory(code_type, shared=campaign.is_shared)

    async def delete_codes(self, code_type: str) -> int:
        await self.campaign(code_type)
        return await self._store.delete_codes(code_type)

    async def reset_codes(self, code_type: str, to: CodeState, by: str) -> int:
        campaign = await self.campaign(code_type)
        if campaign.is_shared:
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_TYPE_MUST_BE_SINGLE_USE,
                "a shared campaign's users' instances are not reset",
            )
        target(CodeState.AVAILABLE, Action.RESET, to)  # refuses a state codes cannot reset to
        return await self._store.reset_codes(code_type, to, self._new_id(), by, self._clock())

    async def _edit(self, code_type: str, scan_code: str, change: Callable[[Code], Change]) -> Code:
        """Read, decide in the domain, write if nothing changed meanwhile."""
        for _ in range(_EDIT_ATTEMPTS):
            code = await self.code(code_type, scan_code)
            ref = CodeRef(code_type, code.key)
            applied = await self._store.apply(ref, [change(code)], version=code.version)
            if applied is not None:
                return applied
        raise DomainError(ReasonCode.REDEMPTION_CODE_VERSION_MISMATCH, "code keeps changing; retry")

    async def _ref(self, code_type: str, scan_code: str) -> CodeRef:
        """Where a personal code of the campaign is, by its key there."""
        return CodeRef(code_type, self._keys.of(await self.campaign(code_type), scan_code))


def _shared_scan_code(scan_code: str) -> str:
    """A shared campaign's code: a legal scan code of at most 20 characters."""
    norm = checked(scan_code)
    if len(norm) > MAX_SHARED_SCAN_CODE:
        raise DomainError(
            ReasonCode.INVALID_SCAN_CODE_LENGTH,
            f"a shared campaign's scanCode has at most {MAX_SHARED_SCAN_CODE} characters",
        )
    return scan_code.strip().upper()
