"""The MongoDB store, on PyMongo's AsyncMongoClient.

Each transition is one `findOneAndUpdate` whose filter names the expected
state and whose update pipeline appends the transition's event, with a
snapshot of the code as changed, to the code's own outbox: the state change
and its event are committed together or not at all, without transactions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared import topology
from shared.domain.model import (
    Campaign,
    Change,
    Code,
    CodeEvent,
    CodeUseType,
    HistoryEntry,
    Redemption,
    RedemptionStatus,
    ReplyTo,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import normalise
from shared.domain.states import Action, CodeState
from shared.ports import PendingEvent, PendingEvents

Doc = dict[str, Any]
_HIDDEN = {"outbox": 0, "history": 0}
_TERMINAL = [s.value for s in RedemptionStatus if s.is_terminal]


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _plain_fields(cls: type, *special: str) -> list[tuple[str, str]]:
    names = (f.name for f in dataclasses.fields(cls))
    return [(name, camel(name)) for name in names if name not in special]


_CODE_FIELDS = _plain_fields(Code, "redemption_code_id", "code_state", "history")
_CAMPAIGN_FIELDS = _plain_fields(Campaign, "code_type", "code_use_type")
# The code record as of a transition, taken inside the update that makes it.
_SNAPSHOT = {
    "redemptionCodeId": "$_id",
    "codeState": "$codeState",
    **{key: f"${key}" for _, key in _CODE_FIELDS},
}
_REPLY_PENDING = {
    "$and": [
        {"$in": ["$status", _TERMINAL]},
        {"$gt": [{"$size": {"$ifNull": ["$replies", []]}}, 0]},
    ]
}


def _append(array: str, item: Any) -> Doc:
    return {"$concatArrays": [{"$ifNull": [f"${array}", []]}, [item]]}


def _code_from_doc(doc: Mapping[str, Any]) -> Code:
    return Code(
        redemption_code_id=doc.get("redemptionCodeId") or doc["_id"],
        code_state=CodeState(doc["codeState"]),
        history=tuple(_history_from_doc(h) for h in doc.get("history", ())),
        **{name: doc[key] for name, key in _CODE_FIELDS if key in doc},
    )


def _code_to_doc(code: Code) -> Doc:
    doc: Doc = {key: getattr(code, name) for name, key in _CODE_FIELDS}
    doc.update(
        _id=code.redemption_code_id,
        codeState=code.code_state.value,
        scanNorm=normalise(code.scan_code),
        history=[_history_to_doc(h) for h in code.history],
    )
    return doc


def _history_to_doc(entry: HistoryEntry) -> Doc:
    return {
        "at": entry.at,
        "action": entry.action.value,
        "from": entry.from_state.value if entry.from_state else None,
        "to": entry.to_state.value,
        "by": entry.by,
        "redemptionId": entry.redemption_id,
        "reason": entry.reason,
    }


def _history_from_doc(doc: Mapping[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        at=doc["at"],
        action=Action(doc["action"]),
        from_state=CodeState(doc["from"]) if doc.get("from") else None,
        to_state=CodeState(doc["to"]),
        by=doc["by"],
        redemption_id=doc.get("redemptionId"),
        reason=doc.get("reason"),
    )


def _campaign_to_doc(campaign: Campaign) -> Doc:
    doc: Doc = {key: getattr(campaign, name) for name, key in _CAMPAIGN_FIELDS}
    doc.update(_id=campaign.code_type, codeUseType=campaign.code_use_type.value)
    return doc


def _campaign_from_doc(doc: Mapping[str, Any]) -> Campaign:
    return Campaign(
        code_type=doc["_id"],
        code_use_type=CodeUseType(doc["codeUseType"]),
        **{name: doc[key] for name, key in _CAMPAIGN_FIELDS if key in doc},
    )


def _redemption_to_doc(r: Redemption) -> Doc:
    return {
        "_id": r.redemption_id,
        "requestId": r.request_id,
        "userId": r.user_id,
        "scanCode": r.scan_code,
        "codeType": r.code_type,
        "status": r.status.value,
        "customRedemptionInfo": r.custom_redemption_info,
        "reasonCode": int(r.reason_code) if r.reason_code else None,
        "message": r.message,
        "attempt": r.attempt,
        "acceptedAt": r.accepted_at,
        "updatedAt": r.updated_at,
        "completedAt": r.completed_at,
        "code": _code_to_doc(r.code) | {"redemptionCodeId": r.code.redemption_code_id}
        if r.code
        else None,
        "replies": [{"queue": x.queue, "correlationId": x.correlation_id} for x in r.replies],
    }


def _redemption_from_doc(doc: Mapping[str, Any]) -> Redemption:
    code = doc.get("code")
    reason = doc.get("reasonCode")
    return Redemption(
        redemption_id=doc["_id"],
        request_id=doc["requestId"],
        user_id=doc["userId"],
        scan_code=doc["scanCode"],
        code_type=doc.get("codeType"),
        status=RedemptionStatus(doc["status"]),
        custom_redemption_info=doc.get("customRedemptionInfo"),
        reason_code=ReasonCode(reason) if reason else None,
        message=doc.get("message"),
        attempt=doc.get("attempt", 0),
        accepted_at=doc["acceptedAt"],
        updated_at=doc["updatedAt"],
        completed_at=doc.get("completedAt"),
        code=_code_from_doc(code) if code else None,
        replies=tuple(ReplyTo(x["queue"], x["correlationId"]) for x in doc.get("replies", ())),
    )


def _stages(change: Change) -> list[Doc]:
    """The update-pipeline stages of one transition: fields, history, event."""
    fields = {camel(name): {"$literal": value} for name, value in change.fields.items()}
    event = change.event
    envelope = {
        "eventId": event.event_id,
        "name": event.name,
        "occurredAt": event.occurred_at,
        "redemptionId": event.redemption_id,
        "userId": event.user_id,
    }
    return [
        {
            "$set": fields
            | {
                "codeState": change.target.value,
                "updatedAt": {"$literal": event.occurred_at},
                "version": {"$add": ["$version", 1]},
            }
        },
        {
            "$set": {
                "history": _append("history", {"$literal": _history_to_doc(change.history)}),
                "outbox": _append(
                    "outbox", {"$mergeObjects": [{"$literal": envelope}, {"code": _SNAPSHOT}]}
                ),
            }
        },
    ]


def _outbox_pending() -> Doc:
    return {"$set": {"outboxPending": {"$size": {"$ifNull": ["$outbox", []]}}}}


class MongoStore:
    """The `Store` port on MongoDB."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._db = db
        self._campaigns: AsyncCollection[Doc] = db[topology.CAMPAIGNS]
        self._codes: AsyncCollection[Doc] = db[topology.CODES]
        self._redemptions: AsyncCollection[Doc] = db[topology.REDEMPTIONS]

    @classmethod
    def connect(
        cls, url: str, database: str, **options: Any
    ) -> tuple[MongoStore, AsyncMongoClient[Doc]]:
        client: AsyncMongoClient[Doc] = AsyncMongoClient(url, tz_aware=True, **options)
        return cls(client[database]), client

    async def create_indexes(self) -> None:
        """Idempotent: safe on every start of every service."""
        await self._codes.create_indexes(
            [
                IndexModel([("codeType", ASCENDING), ("scanNorm", ASCENDING)], unique=True),
                IndexModel([("scanNorm", ASCENDING)]),
                IndexModel(
                    [("redeemedByUserId", ASCENDING), ("codeType", ASCENDING)],
                    partialFilterExpression={"codeState": CodeState.REDEEMED.value},
                ),
                IndexModel(
                    [("outboxPending", ASCENDING)],
                    partialFilterExpression={"outboxPending": {"$gt": 0}},
                ),
            ]
        )
        await self._redemptions.create_indexes(
            [
                IndexModel([("codeType", ASCENDING), ("acceptedAt", DESCENDING)]),
                IndexModel(
                    [("replyPending", ASCENDING)],
                    partialFilterExpression={"replyPending": True},
                ),
            ]
        )

    async def ping(self) -> None:
        await self._db.command("ping")

    async def create_campaign(self, campaign: Campaign) -> None:
        try:
            await self._campaigns.insert_one(_campaign_to_doc(campaign))
        except DuplicateKeyError:
            raise DomainError(
                ReasonCode.CODE_TYPE_EXISTS, f"campaign {campaign.code_type} exists"
            ) from None

    async def get_campaign(self, code_type: str) -> Campaign | None:
        doc = await self._campaigns.find_one({"_id": code_type})
        return _campaign_from_doc(doc) if doc else None

    async def list_campaigns(self, *, skip: int, limit: int) -> list[Campaign]:
        cursor = self._campaigns.find({}).sort("_id", ASCENDING).skip(skip).limit(limit)
        return [_campaign_from_doc(doc) async for doc in cursor]

    async def count_campaigns(self) -> int:
        return await self._campaigns.count_documents({})

    async def add_code(self, code: Code) -> None:
        try:
            await self._codes.insert_one(_code_to_doc(code))
        except DuplicateKeyError:
            raise DomainError(
                ReasonCode.SCAN_CODE_EXISTS,
                f"campaign {code.code_type} already has scan code {code.scan_code}",
            ) from None

    async def get_code(self, code_type: str, scan_norm: str) -> Code | None:
        doc = await self._codes.find_one(
            {"codeType": code_type, "scanNorm": scan_norm}, {"outbox": 0}
        )
        return _code_from_doc(doc) if doc else None

    async def find_codes(self, scan_norm: str, *, limit: int) -> list[Code]:
        cursor = self._codes.find({"scanNorm": scan_norm}, _HIDDEN).limit(limit)
        return [_code_from_doc(doc) async for doc in cursor]

    async def apply(
        self,
        code_type: str,
        scan_norm: str,
        changes: Sequence[Change],
        *,
        redemption_id: str | None = None,
        version: int | None = None,
    ) -> Code | None:
        query: Doc = {
            "codeType": code_type,
            "scanNorm": scan_norm,
            "codeState": changes[0].source.value,
        }
        if redemption_id is not None:
            query["redemptionId"] = redemption_id
        if version is not None:
            query["version"] = version
        pipeline = [stage for change in changes for stage in _stages(change)]
        doc = await self._codes.find_one_and_update(
            query,
            [*pipeline, _outbox_pending()],
            projection=_HIDDEN,
            return_document=ReturnDocument.AFTER,
        )
        return _code_from_doc(doc) if doc else None

    async def set_custom_code_info(
        self, code_type: str, scan_norm: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code | None:
        doc = await self._codes.find_one_and_update(
            {"codeType": code_type, "scanNorm": scan_norm, "version": version},
            {
                "$set": {"customCodeInfo": dict(info)},
                "$inc": {"version": 1},
                "$currentDate": {"updatedAt": True},
            },
            projection=_HIDDEN,
            return_document=ReturnDocument.AFTER,
        )
        return _code_from_doc(doc) if doc else None

    async def redeemed_codes(self, user_id: str, code_type: str | None) -> list[Code]:
        query: Doc = {"redeemedByUserId": user_id, "codeState": CodeState.REDEEMED.value}
        if code_type is not None:
            query["codeType"] = code_type
        cursor = self._codes.find(query, _HIDDEN).sort("redeemedAt", ASCENDING)
        return [_code_from_doc(doc) async for doc in cursor]

    async def open_redemption(self, redemption: Redemption) -> Redemption | None:
        doc = _redemption_to_doc(redemption)
        existing = await self._redemptions.find_one_and_update(
            {"_id": redemption.redemption_id},
            {"$setOnInsert": {k: v for k, v in doc.items() if k != "_id"}},
            upsert=True,
            return_document=ReturnDocument.BEFORE,
        )
        return _redemption_from_doc(existing) if existing else None

    async def add_reply(self, redemption_id: str, reply: ReplyTo) -> None:
        item = {"queue": reply.queue, "correlationId": reply.correlation_id}
        await self._redemptions.update_one(
            {"_id": redemption_id},
            [
                {"$set": {"replies": _append("replies", {"$literal": item})}},
                {"$set": {"replyPending": _REPLY_PENDING}},
            ],
        )

    async def finish_redemption(self, redemption: Redemption) -> Redemption:
        doc = _redemption_to_doc(redemption)
        outcome = {
            key: {"$literal": doc[key]}
            for key in (
                "status",
                "reasonCode",
                "message",
                "attempt",
                "code",
                "codeType",
                "updatedAt",
                "completedAt",
            )
        }
        stored = await self._redemptions.find_one_and_update(
            {"_id": redemption.redemption_id, "status": {"$nin": _TERMINAL}},
            [{"$set": outcome}, {"$set": {"replyPending": _REPLY_PENDING}}],
            return_document=ReturnDocument.AFTER,
        )
        if stored is None:
            stored = await self._redemptions.find_one({"_id": redemption.redemption_id})
        if stored is None:
            raise LookupError(f"redemption {redemption.redemption_id} was never opened")
        return _redemption_from_doc(stored)

    async def get_redemption(self, redemption_id: str) -> Redemption | None:
        doc = await self._redemptions.find_one({"_id": redemption_id})
        return _redemption_from_doc(doc) if doc else None

    async def pending_events(self, *, limit: int) -> list[PendingEvents]:
        cursor = self._codes.find({"outboxPending": {"$gt": 0}}, {"outbox": 1}).limit(limit)
        return [
            PendingEvents(doc["_id"], tuple(_pending_event(e) for e in doc["outbox"]))
            async for doc in cursor
        ]

    async def mark_relayed(self, relayed: Sequence[PendingEvents]) -> None:
        if not relayed:
            return
        updates = [
            UpdateOne(
                {"_id": item.code_id},
                [
                    _without("outbox", "eventId", [p.event.event_id for p in item.events]),
                    _outbox_pending(),
                ],
            )
            for item in relayed
        ]
        await self._codes.bulk_write(updates, ordered=False)

    async def pending_replies(self, *, limit: int) -> list[Redemption]:
        cursor = self._redemptions.find({"replyPending": True}).limit(limit)
        return [_redemption_from_doc(doc) async for doc in cursor]

    async def mark_replied(self, replied: Sequence[Redemption]) -> None:
        if not replied:
            return
        updates = [
            UpdateOne(
                {"_id": r.redemption_id},
                [
                    _without("replies", "correlationId", [x.correlation_id for x in r.replies]),
                    {"$set": {"replyPending": _REPLY_PENDING}},
                ],
            )
            for r in replied
        ]
        await self._redemptions.bulk_write(updates, ordered=False)


def _without(array: str, key: str, values: list[str]) -> Doc:
    """A pipeline stage dropping the items of `array` whose `key` is in `values`."""
    keep = {"$not": [{"$in": [f"$$this.{key}", {"$literal": values}]}]}
    return {"$set": {array: {"$filter": {"input": f"${array}", "cond": keep}}}}


def _pending_event(doc: Mapping[str, Any]) -> PendingEvent:
    event = CodeEvent(
        event_id=doc["eventId"],
        name=doc["name"],
        occurred_at=doc["occurredAt"],
        redemption_id=doc.get("redemptionId"),
        user_id=doc.get("userId"),
    )
    return PendingEvent(event, _code_from_doc(doc["code"]))
