"""Shared-code claims: a user's claim on a campaign, the campaign's redemption
slots, and the per-user instances of a shared code."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo.errors import DuplicateKeyError

from shared.adapters.documents import code_from_doc, code_to_doc, event_to_doc
from shared.adapters.mongodb.base import MongoBase
from shared.adapters.mongodb.codec import HIDDEN, query_of
from shared.domain import model
from shared.domain.model import Change, Code

_CLAIM_TRIES = 100  # a user's claim taken and released again between two of our steps


class MongoClaims(MongoBase):
    """Shared codes' user claims, slots and instances."""

    async def reserve_user(self, code_type: str, user_id: str, redemption_id: str) -> str:
        key = {"codeType": code_type, "userId": user_id}
        for _ in range(_CLAIM_TRIES):
            try:
                await self._claims.insert_one({"_id": key, "redemptionId": redemption_id})
                return redemption_id
            except DuplicateKeyError:
                holder = await self._claims.find_one({"_id": key})
            if holder is not None:
                return str(holder["redemptionId"])
            # Released between the two: the claim is free again, so try to take it.
        raise RuntimeError(f"the claim of {user_id} on {code_type} kept changing hands")

    async def release_user(self, code_type: str, user_id: str, redemption_id: str) -> None:
        key = {"codeType": code_type, "userId": user_id}
        await self._claims.delete_one({"_id": key, "redemptionId": redemption_id})

    async def user_holder(self, code_type: str, user_id: str) -> str | None:
        held = await self._claims.find_one({"_id": {"codeType": code_type, "userId": user_id}})
        return None if held is None else str(held["redemptionId"])

    async def take_slot(self, code_type: str, redemption_id: str, now: datetime) -> bool:
        taken = await self._campaigns.update_one(
            {"_id": code_type, "inflight": {"$ne": redemption_id}} | query_of(model.slot_open(now)),
            {"$inc": {"redemptionCount": 1}, "$push": {"inflight": redemption_id}},
        )
        if taken.modified_count:
            return True
        held = await self._campaigns.count_documents({"_id": code_type, "inflight": redemption_id})
        return held > 0

    async def release_slot(self, code_type: str, redemption_id: str, *, refund: bool) -> None:
        await self._campaigns.update_one(
            {"_id": code_type, "inflight": redemption_id},
            {"$pull": {"inflight": redemption_id}, "$inc": {"redemptionCount": -int(refund)}},
        )

    async def add_instance(self, instance: Code, changes: Sequence[Change]) -> tuple[Code, bool]:
        code, outbox = instance, []
        for change in changes:
            code = model.applied(code, change)
            outbox.append(event_to_doc(change.event, code))
        doc = code_to_doc(code, outbox=outbox)
        if outbox:
            doc["outboxSince"] = outbox[0]["occurredAt"]
        try:
            await self._instances.insert_one(doc)
            return code, True
        except DuplicateKeyError:
            existing = await self._instances.find_one(
                {"codeType": instance.code_type, "redeemedByUserId": code.redeemed_by_user_id},
                HIDDEN,
            )
            if existing is None:
                raise
            return code_from_doc(existing), False
