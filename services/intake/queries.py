"""Reads for callers: campaigns, redemptions and users' codes; what is not there is refused."""

from __future__ import annotations

from shared.domain.access import Grant
from shared.domain.model import Campaign, Code, Place, Redemption
from shared.domain.reasons import DomainError, ReasonCode
from shared.ports import Campaigns, Store


async def campaign(campaigns: Campaigns, code_type: str) -> Campaign:
    found = await campaigns.get_campaign(code_type)
    if found is None:
        raise DomainError(ReasonCode.REDEMPTION_CODE_TYPE_NOT_FOUND, f"no campaign {code_type}")
    return found


async def personal_campaign(campaigns: Campaigns, code_type: str) -> Campaign:
    """The campaign, which must be one of personal codes (SINGLE)."""
    found = await campaign(campaigns, code_type)
    if found.is_shared:
        raise DomainError(
            ReasonCode.REDEMPTION_CODE_TYPE_MUST_BE_SINGLE_USE,
            f"campaign {code_type} is shared: its one code is the campaign's scanCode",
        )
    return found


class Queries:
    """What callers look up about redemptions and users."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def redemption(self, redemption_id: str, grant: Grant) -> Redemption:
        found = await self._store.get_redemption(redemption_id)
        if found is None:
            raise DomainError(ReasonCode.REDEMPTION_NOT_FOUND, "no such redemption (yet)")
        grant.check_campaign(found.code_type)
        return found

    async def recent(
        self, code_type: str | None, limit: int, after: Place | None, grant: Grant
    ) -> list[Redemption]:
        """Redemption attempts, newest first, of one campaign or of all within the key's
        reach."""
        if code_type is not None:
            await campaign(self._store, code_type)
        if code_type is not None or grant.campaigns is None:
            return await self._store.recent_redemptions(code_type, limit=limit, after=after)
        found = [  # the first of each campaign the key names, merged
            redemption
            for name in grant.campaigns
            for redemption in await self._store.recent_redemptions(name, limit=limit, after=after)
        ]
        return sorted(found, key=lambda r: (r.accepted_at, r.redemption_id), reverse=True)[:limit]

    async def redeemed_codes(self, user_id: str, code_type: str | None, grant: Grant) -> list[Code]:
        codes = await self._store.redeemed_codes(user_id, code_type)
        return [code for code in codes if grant.reaches(code.code_type)]
