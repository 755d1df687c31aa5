"""Redemptions: opening and finishing them, and the replies they owe."""

from __future__ import annotations

from pymongo import DESCENDING, ReturnDocument

from shared.adapters.documents import Doc, camel, redemption_from_doc, redemption_to_doc
from shared.adapters.mongodb.base import MongoBase
from shared.adapters.mongodb.codec import REPLY_PENDING, TERMINAL, append
from shared.domain import model
from shared.domain.model import Place, Redemption, RedemptionStatus, ReplyTo


class MongoRedemptions(MongoBase):
    """Redemption records, and the replies they owe."""

    async def recent_redemptions(
        self, code_type: str | None, *, limit: int, after: Place | None
    ) -> list[Redemption]:
        query: Doc = {}
        if code_type is not None:
            query["codeType"] = code_type
        if after is not None and after.redemption_id is None:
            query["acceptedAt"] = {"$lt": after.accepted_at}
        elif after is not None:
            query["$or"] = [
                {"acceptedAt": {"$lt": after.accepted_at}},
                {"acceptedAt": after.accepted_at, "_id": {"$lt": after.redemption_id}},
            ]
        order = [("acceptedAt", DESCENDING), ("_id", DESCENDING)]
        cursor = self._redemptions.find(query).sort(order).limit(limit)
        return [redemption_from_doc(doc) async for doc in cursor]

    async def open_redemption(self, redemption: Redemption) -> Redemption | None:
        doc = redemption_to_doc(redemption)
        existing = await self._redemptions.find_one_and_update(
            {"_id": redemption.redemption_id},
            {"$setOnInsert": {k: v for k, v in doc.items() if k != "_id"}},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        return redemption_from_doc(existing) if existing else None

    async def add_reply(self, redemption_id: str, reply: ReplyTo) -> None:
        item = {"queue": reply.queue, "correlationId": reply.correlation_id}
        await self._redemptions.update_one(
            {"_id": redemption_id},
            [
                {"$set": {"replies": append("replies", {"$literal": item})}},
                {"$set": {"replyPending": REPLY_PENDING}},
            ],
        )

    async def key_redemption(self, redemption_id: str, key: str) -> None:
        await self._redemptions.update_one({"_id": redemption_id}, {"$set": {"codeKey": key}})

    async def finish_redemption(self, redemption: Redemption) -> Redemption:
        doc = redemption_to_doc(redemption)
        outcome = {key: {"$literal": doc[key]} for key in map(camel, model.OUTCOME_FIELDS)}
        stored = await self._redemptions.find_one_and_update(
            {"_id": redemption.redemption_id, "$or": _recorded_over(redemption)},
            [{"$set": outcome}, {"$set": {"replyPending": REPLY_PENDING}}],
            return_document=ReturnDocument.AFTER,
        )
        if stored is None:
            stored = await self._redemptions.find_one({"_id": redemption.redemption_id})
        if stored is None:
            raise LookupError(f"redemption {redemption.redemption_id} was never opened")
        return redemption_from_doc(stored)

    async def get_redemption(self, redemption_id: str) -> Redemption | None:
        doc = await self._redemptions.find_one({"_id": redemption_id})
        return redemption_from_doc(doc) if doc else None


def _recorded_over(outcome: Redemption) -> list[Doc]:
    """What a redemption may be for `outcome` to be recorded over it (`model.records`)."""
    over: list[Doc] = [{"status": {"$nin": TERMINAL}}]
    if outcome.status is RedemptionStatus.REDEEMED:
        status, reason = model.GIVEN_UP
        over.append({"status": status.value, "reasonCode": int(reason)})
    return over
