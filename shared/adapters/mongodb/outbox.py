"""The outboxes the relays drain: codes' events waiting to be published, and
redemptions' replies waiting to be sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo import ASCENDING, UpdateOne

from shared import topology
from shared.adapters.documents import Doc, pending_event_from_doc, redemption_from_doc
from shared.adapters.mongodb.base import MongoBase
from shared.adapters.mongodb.codec import REPLY_PENDING, outbox_pending
from shared.adapters.unreadable import set_aside
from shared.domain.model import Redemption
from shared.ports import Backlog, PendingEvents

# The outboxes waiting longest first; missing times (from older versions) before all.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _waited(doc: Doc) -> tuple[bool, datetime]:
    since = doc.get("outboxSince")
    return (since is not None, since or _EPOCH)


class MongoOutbox(MongoBase):
    """What the relays take: pending events and pending replies."""

    async def pending_events(self, *, limit: int) -> list[PendingEvents]:
        found: list[tuple[tuple[bool, datetime], PendingEvents]] = []
        for source, collection in self._outboxes.items():
            cursor = collection.find(
                {"outboxPending": {"$gt": 0}}, {"outbox": 1, "outboxSince": 1}
            ).sort("outboxSince", ASCENDING)
            async for doc in cursor.limit(limit):
                try:
                    events = tuple(pending_event_from_doc(e) for e in doc["outbox"])
                except Exception as error:
                    set_aside(f"{source} outbox", doc["_id"], error)
                    await collection.update_one({"_id": doc["_id"]}, {"$set": {"outboxPending": 0}})
                    continue
                found.append((_waited(doc), PendingEvents(doc["_id"], events, source)))
        found.sort(key=lambda item: item[0])
        return [item for _, item in found[:limit]]

    async def mark_relayed(self, relayed: Sequence[PendingEvents]) -> None:
        for source, collection in self._outboxes.items():
            updates = [
                UpdateOne(
                    {"_id": item.code_id},
                    [
                        _without("outbox", "eventId", [p.event.event_id for p in item.events]),
                        outbox_pending(),
                    ],
                )
                for item in relayed
                if item.source == source
            ]
            if updates:
                await collection.bulk_write(updates, ordered=False)
        emptied = [i.code_id for i in relayed if i.source == topology.DELETED_OUTBOXES]
        if emptied:
            await self._deleted.delete_many({"_id": {"$in": emptied}, "outboxPending": 0})

    async def backlog(self) -> Backlog:
        events, oldest = 0, None
        for collection in self._outboxes.values():
            pipeline: list[Doc] = [
                {"$match": {"outboxPending": {"$gt": 0}}},
                # As `pending_events` reads them: so the outbox's partial index serves.
                {"$sort": {"outboxSince": ASCENDING}},
                {
                    "$group": {
                        "_id": None,
                        "n": {"$sum": "$outboxPending"},
                        "at": {"$min": "$outboxSince"},
                    }
                },
            ]
            async for row in await collection.aggregate(pipeline):
                events += row["n"]
                if row["at"] is not None and (oldest is None or row["at"] < oldest):
                    oldest = row["at"]
        return Backlog(events, oldest)

    async def pending_replies(self, *, limit: int) -> list[Redemption]:
        cursor = self._redemptions.find({"replyPending": True}).limit(limit)
        return [redemption_from_doc(doc) async for doc in cursor]

    async def mark_replied(self, replied: Sequence[Redemption]) -> None:
        if not replied:
            return
        updates = [
            UpdateOne(
                {"_id": r.redemption_id},
                [
                    _without("replies", "correlationId", [x.correlation_id for x in r.replies]),
                    {"$set": {"replyPending": REPLY_PENDING}},
                ],
            )
            for r in replied
        ]
        await self._redemptions.bulk_write(updates, ordered=False)


def _without(array: str, key: str, values: list[str]) -> Doc:
    """A pipeline stage dropping the items of `array` whose `key` is in `values`."""
    keep = {"$not": [{"$in": [f"$$this.{key}", {"$literal": values}]}]}
    return {"$set": {array: {"$filter": {"input": f"${array}", "cond": keep}}}}
