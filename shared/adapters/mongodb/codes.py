"""Codes: adding and finding them, their state transitions (each with its event
in the code's outbox), custom info, inventory, deletion and reset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.adapters.documents import (
    CODE_FIELDS,
    Doc,
    camel,
    code_from_doc,
    code_to_doc,
    envelope_to_doc,
    history_to_doc,
    stored,
)
from shared.adapters.mongodb.base import MongoBase
from shared.adapters.mongodb.codec import HIDDEN, append, outbox_pending, query_of
from shared.domain import model
from shared.domain.model import Change, Code, CodeRef
from shared.domain.states import CodeState

# The code record as of a transition, taken inside the update that makes it (the
# `code` of `documents.event_to_doc`).
_SNAPSHOT = {
    "redemptionCodeId": "$_id",
    "codeState": "$codeState",
    **{key: f"${key}" for _, key in CODE_FIELDS},
}


def _stages(change: Change, *, each: Doc | None = None) -> list[Doc]:
    """The update-pipeline stages of one transition: history, fields, event.

    `each` holds what an update of many codes takes from each one: the state its
    history entry leaves (`from`) and its event's id (`eventId`).
    """
    fields = {
        camel(name): {"$literal": stored(name, value)} for name, value in change.fields.items()
    }
    event = change.event
    entry: Doc = {"$literal": history_to_doc(change.history)}
    own: Doc = {"code": _SNAPSHOT}
    if each is not None:
        entry = {"$mergeObjects": [entry, {"from": each["from"]}]}
        own["eventId"] = each["eventId"]
    return [
        {"$set": {"history": append("history", entry)}},
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
                "outbox": append(
                    "outbox", {"$mergeObjects": [{"$literal": envelope_to_doc(event)}, own]}
                )
            }
        },
    ]


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
        outbox_pending(),
    ]


class MongoCodes(MongoBase):
    """Codes, and the transitions that write their outboxes."""

    async def add_code(self, code: Code) -> None:
        try:
            await self._codes.insert_one(code_to_doc(code))
        except DuplicateKeyError:
            raise model.scan_code_taken(code.code_type, code.scan_code) from None

    async def get_code(self, ref: CodeRef) -> Code | None:
        collection, query = self._where(ref)
        doc = await collection.find_one(query, {"outbox": 0})
        return code_from_doc(doc) if doc else None

    async def find_codes(self, key: str, *, limit: int) -> list[Code]:
        cursor = self._codes.find({"scanNorm": key}, HIDDEN).limit(limit)
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
            [*pipeline, outbox_pending()],
            projection=HIDDEN,
            return_document=ReturnDocument.AFTER,
        )
        return code_from_doc(doc) if doc else None

    async def set_custom_code_info(
        self, code_type: str, key: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code | None:
        doc = await self._codes.find_one_and_update(
            {"codeType": code_type, "scanNorm": key, "version": version},
            {
                "$set": {"customCodeInfo": stored("custom_code_info", info)},
                "$inc": {"version": 1},
                "$currentDate": {"updatedAt": True},
            },
            projection=HIDDEN,
            return_document=ReturnDocument.AFTER,
        )
        return code_from_doc(doc) if doc else None

    async def redeemed_codes(self, user_id: str, code_type: str | None) -> list[Code]:
        query: Doc = {"redeemedByUserId": user_id, "codeState": CodeState.REDEEMED.value}
        if code_type is not None:
            query["codeType"] = code_type
        found = []
        for collection in (self._codes, self._instances):
            cursor = collection.find(query, HIDDEN).sort("redeemedAt", ASCENDING)
            found += [code_from_doc(doc) async for doc in cursor]
        return sorted(found, key=lambda code: code.redeemed_at or code.updated_at)

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
        unheld = {"codeType": code_type} | query_of(model.deletable())
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
        # One update resets them all: the domain's reset, as made for a code in state
        # `to`, with what differs from code to code (the state it leaves, its event's
        # id) taken from each inside the update.
        change = model.reset_from(to, to, now=now, event_id=reset_id, by=by)
        each = {"from": "$codeState", "eventId": {"$concat": [f"{reset_id}:", "$_id"]}}
        done = await self._codes.update_many(
            {"codeType": code_type} | query_of(model.resettable()),
            [*_stages(change, each=each), outbox_pending()],
        )
        return done.modified_count
