"""The MongoDB store, on PyMongo's AsyncMongoClient.

Each transition is one `findOneAndUpdate` whose filter names the expected
state and whose update pipeline appends the transition's event, with a
snapshot of the code as changed, to the code's own outbox: the state change
and its event are committed together or not at all, without transactions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared import topology
from shared.adapters.documents import (
    CODE_FIELDS,
    Doc,
    camel,
    campaign_from_doc,
    campaign_to_doc,
    code_from_doc,
    code_to_doc,
    event_to_doc,
    history_to_doc,
    job_from_doc,
    job_to_doc,
    pending_event_from_doc,
    redemption_from_doc,
    redemption_to_doc,
    stored,
)
from shared.adapters.unreadable import readable, set_aside
from shared.domain import model
from shared.domain.model import (
    AttemptState,
    Campaign,
    CampaignFilter,
    Change,
    Code,
    CodeRef,
    Job,
    Redemption,
    RedemptionStatus,
    ReplyTo,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import EVENT_NAMES, RESETTABLE, Action, CodeState
from shared.ports import Due, PendingEvents

_HIDDEN = {"outbox": 0}
DUPLICATE_KEY = 11000
_CLAIM_TRIES = 100  # a user's claim taken and released again between two of our steps
_TERMINAL = [s.value for s in RedemptionStatus if s.is_terminal]


# The code record as of a transition, taken inside the update that makes it.
_SNAPSHOT = {
    "redemptionCodeId": "$_id",
    "codeState": "$codeState",
    **{key: f"${key}" for _, key in CODE_FIELDS},
}
_REPLY_PENDING = {
    "$and": [
        {"$in": ["$status", _TERMINAL]},
        {"$gt": [{"$size": {"$ifNull": ["$replies", []]}}, 0]},
    ]
}


_TIMERS = IndexModel(
    [("timerAt", ASCENDING)], partialFilterExpression={"timerAt": {"$type": "date"}}
)
_OUTBOX = IndexModel(
    [("outboxSince", ASCENDING)], partialFilterExpression={"outboxPending": {"$gt": 0}}
)


def _append(array: str, item: Any) -> Doc:
    return {"$concatArrays": [{"$ifNull": [f"${array}", []]}, [item]]}


def _stages(change: Change) -> list[Doc]:
    """The update-pipeline stages of one transition: fields, history, event."""
    fields = {
        camel(name): {"$literal": stored(name, value)} for name, value in change.fields.items()
    }
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
                "history": _append("history", {"$literal": history_to_doc(change.history)}),
                "outbox": _append(
                    "outbox", {"$mergeObjects": [{"$literal": envelope}, {"code": _SNAPSHOT}]}
                ),
            }
        },
    ]


def _outbox_pending() -> Doc:
    """The stage keeping the outbox's size, and when its oldest event occurred (the
    relay takes the outboxes that waited longest first)."""
    return {
        "$set": {
            "outboxPending": {"$size": {"$ifNull": ["$outbox", []]}},
            "outboxSince": {
                "$let": {
                    "vars": {"oldest": {"$arrayElemAt": ["$outbox", 0]}},
                    "in": "$$oldest.occurredAt",
                }
            },
        }
    }


def _merge_outbox(events: list[Doc]) -> list[Doc]:
    """Update stages adding to an outbox those of `events` it does not hold yet."""
    known = {"$map": {"input": {"$ifNull": ["$outbox", []]}, "in": "$$this.eventId"}}
    new = {
        "$filter": {
            "input": {"$literal": events},
            "cond": {"$not": [{"$in": ["$$this.eventId", known]}]},
        }
    }
    return [
        {"$set": {"outbox": {"$concatArrays": [{"$ifNull": ["$outbox", []]}, new]}}},
        _outbox_pending(),
    ]


# The outboxes waiting longest first; missing times (from older versions) before all.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _waited(doc: Doc) -> tuple[bool, datetime]:
    since = doc.get("outboxSince")
    return (since is not None, since or _EPOCH)


class MongoStore:
    """The `Store` port on MongoDB."""

    def __init__(self, db: AsyncDatabase[Doc], client: AsyncMongoClient[Doc] | None = None) -> None:
        self._db = db
        self._client = client
        self._campaigns: AsyncCollection[Doc] = db[topology.CAMPAIGNS]
        self._codes: AsyncCollection[Doc] = db[topology.CODES]
        self._instances: AsyncCollection[Doc] = db[topology.INSTANCES]
        self._claims: AsyncCollection[Doc] = db[topology.SHARED_CLAIMS]
        self._jobs: AsyncCollection[Doc] = db[topology.JOBS]
        self._redemptions: AsyncCollection[Doc] = db[topology.REDEMPTIONS]
        self._deleted: AsyncCollection[Doc] = db[topology.DELETED_OUTBOXES]
        # Where outboxes live, by the tag `PendingEvents.source` carries.
        self._outboxes = {
            topology.CODES: self._codes,
            topology.INSTANCES: self._instances,
            topology.DELETED_OUTBOXES: self._deleted,
        }

    @classmethod
    def connect(cls, url: str, database: str, **options: Any) -> MongoStore:
        """A store that owns its client: `close()` closes it."""
        client: AsyncMongoClient[Doc] = AsyncMongoClient(url, tz_aware=True, **options)
        return cls(client[database], client)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def prepare(self) -> None:
        """Create the indexes; idempotent, safe on every start of every service."""
        await self._codes.create_indexes(
            [
                IndexModel([("codeType", ASCENDING), ("scanNorm", ASCENDING)], unique=True),
                IndexModel([("scanNorm", ASCENDING)]),
                IndexModel([("codeType", ASCENDING), ("codeState", ASCENDING)]),
                IndexModel([("codeType", ASCENDING), ("_id", ASCENDING)]),
                IndexModel(
                    [("jobId", ASCENDING), ("_id", ASCENDING)],
                    partialFilterExpression={"jobId": {"$type": "string"}},
                ),
                IndexModel(
                    [("redeemedByUserId", ASCENDING), ("codeType", ASCENDING)],
                    partialFilterExpression={"codeState": CodeState.REDEEMED.value},
                ),
                _OUTBOX,
                _TIMERS,
            ]
        )
        await self._instances.create_indexes(
            [
                IndexModel([("codeType", ASCENDING), ("redeemedByUserId", ASCENDING)], unique=True),
                _OUTBOX,
                _TIMERS,
            ]
        )
        await self._deleted.create_indexes([_OUTBOX])
        await self._campaigns.create_indexes(
            [
                IndexModel(
                    [("scanNorm", ASCENDING)],
                    unique=True,
                    partialFilterExpression={"scanNorm": {"$type": "string"}},
                ),
            ]
        )
        await self._redemptions.create_indexes(
            [
                IndexModel([("codeType", ASCENDING), ("acceptedAt", DESCENDING)]),
                IndexModel([("acceptedAt", DESCENDING)]),
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
            await self._campaigns.insert_one(campaign_to_doc(campaign))
        except DuplicateKeyError as exc:
            if "scanNorm" in str(exc.details):
                raise DomainError(
                    ReasonCode.SCAN_CODE_EXISTS,
                    f"another shared campaign has scan code {campaign.scan_code}",
                ) from None
            raise DomainError(
                ReasonCode.CODE_TYPE_EXISTS, f"campaign {campaign.code_type} exists"
            ) from None

    async def find_shared_campaign(self, scan_norm: str) -> Campaign | None:
        doc = await self._campaigns.find_one({"scanNorm": scan_norm})
        return campaign_from_doc(doc) if doc else None

    async def get_campaign(self, code_type: str) -> Campaign | None:
        doc = await self._campaigns.find_one({"_id": code_type})
        return campaign_from_doc(doc) if doc else None

    async def list_campaigns(
        self, where: CampaignFilter, *, skip: int, limit: int
    ) -> list[Campaign]:
        cursor = self._campaigns.find(_campaign_query(where)).sort("_id", ASCENDING)
        return [campaign_from_doc(doc) async for doc in cursor.skip(skip).limit(limit)]

    async def count_campaigns(self, where: CampaignFilter) -> int:
        return await self._campaigns.count_documents(_campaign_query(where))

    async def update_campaign(
        self, code_type: str, version: int, fields: Mapping[str, Any], now: datetime
    ) -> Campaign | None:
        changes = {camel(name): _plain(stored(name, value)) for name, value in fields.items()}
        doc = await self._campaigns.find_one_and_update(
            {"_id": code_type, "version": version},
            {"$set": changes | {"updatedAt": now}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return campaign_from_doc(doc) if doc else None

    async def add_code(self, code: Code) -> None:
        try:
            await self._codes.insert_one(code_to_doc(code))
        except DuplicateKeyError:
            raise DomainError(
                ReasonCode.SCAN_CODE_EXISTS,
                f"campaign {code.code_type} already has scan code {code.scan_code}",
            ) from None

    def _where(self, ref: CodeRef) -> tuple[AsyncCollection[Doc], Doc]:
        if ref.user_id is not None:
            return self._instances, {"codeType": ref.code_type, "redeemedByUserId": ref.user_id}
        return self._codes, {"codeType": ref.code_type, "scanNorm": ref.scan_norm}

    async def get_code(self, ref: CodeRef) -> Code | None:
        collection, query = self._where(ref)
        doc = await collection.find_one(query, {"outbox": 0})
        return code_from_doc(doc) if doc else None

    async def find_codes(self, scan_norm: str, *, limit: int) -> list[Code]:
        cursor = self._codes.find({"scanNorm": scan_norm}, _HIDDEN).limit(limit)
        return [code_from_doc(doc) async for doc in cursor]

    async def apply(
        self,
        ref: CodeRef,
        changes: Sequence[Change],
        *,
        redemption_id: str | None = None,
        version: int | None = None,
        attempt: int | None = None,
    ) -> Code | None:
        collection, query = self._where(ref)
        query["codeState"] = changes[0].source.value
        query |= {camel(name): value for name, value in changes[0].expects.items()}
        expected = {"redemptionId": redemption_id, "version": version, "attempt": attempt}
        query |= {key: value for key, value in expected.items() if value is not None}
        pipeline = [stage for change in changes for stage in _stages(change)]
        doc = await collection.find_one_and_update(
            query,
            [*pipeline, _outbox_pending()],
            projection=_HIDDEN,
            return_document=ReturnDocument.AFTER,
        )
        return code_from_doc(doc) if doc else None

    async def update_attempt(
        self,
        ref: CodeRef,
        *,
        redemption_id: str,
        attempt: int,
        state: CodeState,
        fields: Mapping[str, Any],
        attempt_state: AttemptState | None = None,
    ) -> Code | None:
        collection, query = self._where(ref)
        query |= {"redemptionId": redemption_id, "attempt": attempt, "codeState": state.value}
        if attempt_state is not None:
            query["attemptState"] = attempt_state.value
        doc = await collection.find_one_and_update(
            query,
            {"$set": {camel(name): stored(name, value) for name, value in fields.items()}},
            projection=_HIDDEN,
            return_document=ReturnDocument.AFTER,
        )
        return code_from_doc(doc) if doc else None

    async def take_due(self, now: datetime, lease_s: float, *, limit: int) -> list[Due]:
        lease_end = now + timedelta(seconds=lease_s)
        # attempts.lease, as an update: the lease ends at the deadline if that is sooner.
        leased = {
            "$cond": [
                {"$gt": ["$deadlineAt", now]},
                {"$min": ["$deadlineAt", lease_end]},
                lease_end,
            ]
        }
        # `$type` as in the index's filter, so that the partial index is used.
        due = {"timerAt": {"$type": "date", "$lte": now}}
        taken: list[Due] = []
        # The earliest first, of either collection: each one's next due timer, compared.
        heads = {c: await _next_due(c, due) for c in (self._codes, self._instances)}
        while len(taken) < limit:
            waiting = [(at, n, c) for n, (c, at) in enumerate(heads.items()) if at is not None]
            if not waiting:
                break
            _, _, collection = min(waiting)
            doc = await collection.find_one_and_update(
                due,
                [{"$set": {"timerAt": leased}}],
                projection=_HIDDEN,
                sort=[("timerAt", ASCENDING)],
            )
            heads[collection] = await _next_due(collection, due)
            if doc is None:  # another worker took it
                continue
            try:
                code = code_from_doc(doc)
            except Exception as error:  # leased: looked at again when the lease ends
                set_aside(f"{collection.name} timer", doc["_id"], error)
                continue
            user = code.redeemed_by_user_id if collection is self._instances else None
            taken.append(Due(CodeRef(code.code_type, doc["scanNorm"], user), code))
        return taken

    async def set_custom_code_info(
        self, code_type: str, scan_norm: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code | None:
        doc = await self._codes.find_one_and_update(
            {"codeType": code_type, "scanNorm": scan_norm, "version": version},
            {
                "$set": {"customCodeInfo": stored("custom_code_info", info)},
                "$inc": {"version": 1},
                "$currentDate": {"updatedAt": True},
            },
            projection=_HIDDEN,
            return_document=ReturnDocument.AFTER,
        )
        return code_from_doc(doc) if doc else None

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

    async def take_slot(self, code_type: str, redemption_id: str, now: datetime) -> bool:
        open_now = [
            {"$or": [{"validStart": None}, {"validStart": {"$lte": now}}]},
            {"$or": [{"validEnd": None}, {"validEnd": {"$gt": now}}]},
            {
                "$or": [
                    {"maxRedemptions": None},
                    {"$expr": {"$lt": ["$redemptionCount", "$maxRedemptions"]}},
                ]
            },
        ]
        taken = await self._campaigns.update_one(
            {
                "_id": code_type,
                "isDisabled": False,
                "inflight": {"$ne": redemption_id},
                "$and": open_now,
            },
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
                _HIDDEN,
            )
            if existing is None:
                raise
            return code_from_doc(existing), False

    async def redeemed_codes(self, user_id: str, code_type: str | None) -> list[Code]:
        query: Doc = {"redeemedByUserId": user_id, "codeState": CodeState.REDEEMED.value}
        if code_type is not None:
            query["codeType"] = code_type
        found = []
        for collection in (self._codes, self._instances):
            cursor = collection.find(query, _HIDDEN).sort("redeemedAt", ASCENDING)
            found += [code_from_doc(doc) async for doc in cursor]
        return sorted(found, key=lambda code: code.redeemed_at or code.updated_at)

    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        if not codes:
            return []
        try:
            await self._codes.insert_many([code_to_doc(c) for c in codes], ordered=False)
            return [True] * len(codes)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            taken = {e["index"] for e in errors}
            return [n not in taken for n in range(len(codes))]

    async def codes_of(
        self, code_type: str, *, job_id: str | None = None, batch: int = 1000
    ) -> AsyncIterator[list[Code]]:
        # `$type` as in the partial index's filter, so that it is used.
        query: Doc = (
            {"jobId": {"$eq": job_id, "$type": "string"}} if job_id else {"codeType": code_type}
        )
        after: str | None = None
        while True:
            page = query | ({"_id": {"$gt": after}} if after else {})
            cursor = self._codes.find(page, {"outbox": 0, "history": 0}).sort("_id", ASCENDING)
            docs = await cursor.limit(batch).to_list()
            if not docs:
                return
            yield list(readable(((d["_id"], d) for d in docs), code_from_doc, "code"))
            after = docs[-1]["_id"]

    async def count_job_codes(self, job_id: str) -> int:
        return await self._codes.count_documents({"jobId": {"$eq": job_id, "$type": "string"}})

    async def create_job(self, job: Job) -> None:
        await self._jobs.insert_one(job_to_doc(job))

    async def get_job(self, job_id: str) -> Job | None:
        doc = await self._jobs.find_one({"_id": job_id})
        return job_from_doc(doc) if doc else None

    async def update_job(self, job: Job) -> None:
        await self._jobs.replace_one({"_id": job.job_id}, job_to_doc(job))

    async def inventory(self, code_type: str, *, shared: bool) -> dict[CodeState, int]:
        collection = self._instances if shared else self._codes
        counts = dict.fromkeys(CodeState, 0)
        pipeline: list[Doc] = [
            {"$match": {"codeType": code_type}},
            {"$group": {"_id": "$codeState", "n": {"$sum": 1}}},
        ]
        async for row in await collection.aggregate(pipeline):
            counts[CodeState(row["_id"])] = row["n"]
        return counts

    async def delete_codes(self, code_type: str) -> int:
        unheld = {
            "codeType": code_type,
            "codeState": {"$ne": CodeState.IN_PROGRESS.value},
            "timerAt": None,
        }
        quiet = await self._codes.delete_many(unheld | {"outboxPending": {"$not": {"$gt": 0}}})
        deleted = quiet.deleted_count
        # A code with events still to relay: they are kept aside first, then the code
        # goes only if it did not change meanwhile (an event of the relay's may go twice).
        waiting = unheld | {"outboxPending": {"$gt": 0}}
        cursor = self._codes.find(waiting, {"outbox": 1, "version": 1})
        async for doc in cursor:
            await self._deleted.update_one(
                {"_id": doc["_id"]}, _merge_outbox(doc["outbox"]), upsert=True
            )
            gone = await self._codes.delete_one(
                unheld | {"_id": doc["_id"], "version": doc["version"]}
            )
            deleted += gone.deleted_count
        return deleted

    async def reset_codes(
        self, code_type: str, to: CodeState, reset_id: str, by: str, now: datetime
    ) -> int:
        entry = {
            "at": now,
            "action": Action.RESET.value,
            "to": to.value,
            "by": by,
            "redemptionId": None,
            "reason": f"reset to {to.value}",
        }
        envelope = {
            "name": EVENT_NAMES[to],
            "occurredAt": now,
            "redemptionId": None,
            "userId": None,
        }
        fields = {camel(k): {"$literal": v} for k, v in model.reset_fields(to, now).items()}
        pipeline: list[Doc] = [
            {
                "$set": {
                    "history": _append(
                        "history", {"$mergeObjects": [{"$literal": entry}, {"from": "$codeState"}]}
                    )
                }
            },
            {
                "$set": fields
                | {
                    "codeState": to.value,
                    "updatedAt": {"$literal": now},
                    "version": {"$add": ["$version", 1]},
                }
            },
            {
                "$set": {
                    "outbox": _append(
                        "outbox",
                        {
                            "$mergeObjects": [
                                {"$literal": envelope},
                                {
                                    "eventId": {"$concat": [f"{reset_id}:", "$_id"]},
                                    "code": _SNAPSHOT,
                                },
                            ]
                        },
                    )
                }
            },
            _outbox_pending(),
        ]
        resettable = [state.value for state in RESETTABLE]
        done = await self._codes.update_many(
            {"codeType": code_type, "codeState": {"$in": resettable}, "timerAt": None}, pipeline
        )
        return done.modified_count

    async def recent_redemptions(
        self, code_type: str | None, *, limit: int, before: datetime | None
    ) -> list[Redemption]:
        query: Doc = {}
        if code_type is not None:
            query["codeType"] = code_type
        if before is not None:
            query["acceptedAt"] = {"$lt": before}
        cursor = self._redemptions.find(query).sort("acceptedAt", DESCENDING).limit(limit)
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
                {"$set": {"replies": _append("replies", {"$literal": item})}},
                {"$set": {"replyPending": _REPLY_PENDING}},
            ],
        )

    async def finish_redemption(self, redemption: Redemption) -> Redemption:
        doc = redemption_to_doc(redemption)
        outcome = {
            key: {"$literal": doc[key]} for key in map(camel, model.OUTCOME_FIELDS)
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
        return redemption_from_doc(stored)

    async def get_redemption(self, redemption_id: str) -> Redemption | None:
        doc = await self._redemptions.find_one({"_id": redemption_id})
        return redemption_from_doc(doc) if doc else None

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
                        _outbox_pending(),
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
                    {"$set": {"replyPending": _REPLY_PENDING}},
                ],
            )
            for r in replied
        ]
        await self._redemptions.bulk_write(updates, ordered=False)


async def _next_due(collection: AsyncCollection[Doc], due: Doc) -> datetime | None:
    """When the earliest due timer of `collection` fell due; None if none is due."""
    doc = await collection.find_one(due, {"timerAt": 1}, sort=[("timerAt", ASCENDING)])
    return doc["timerAt"] if doc else None


def _plain(value: Any) -> Any:
    """A field value as BSON takes it (policies are dataclasses)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _campaign_query(where: CampaignFilter) -> Doc:
    query: Doc = {}
    if where.code_use_type is not None:
        query["codeUseType"] = where.code_use_type.value
    if where.is_disabled is not None:
        query["isDisabled"] = where.is_disabled
    if where.valid_at is not None:
        query["$and"] = [
            {"$or": [{"validStart": None}, {"validStart": {"$lte": where.valid_at}}]},
            {"$or": [{"validEnd": None}, {"validEnd": {"$gt": where.valid_at}}]},
        ]
    return query


def _without(array: str, key: str, values: list[str]) -> Doc:
    """A pipeline stage dropping the items of `array` whose `key` is in `values`."""
    keep = {"$not": [{"$in": [f"$$this.{key}", {"$literal": values}]}]}
    return {"$set": {array: {"$filter": {"input": f"${array}", "cond": keep}}}}
