"""Fulfillment attempts and their timers: updating an attempt, and leasing the
codes whose timers fell due."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from shared.adapters.documents import Doc, camel, code_from_doc, stored
from shared.adapters.mongodb.base import MongoBase
from shared.adapters.mongodb.codec import HIDDEN
from shared.adapters.unreadable import set_aside
from shared.domain.model import AttemptState, Code, CodeRef
from shared.domain.states import CodeState
from shared.ports import Due


class MongoAttempts(MongoBase):
    """Fulfillment attempts, and the timers that lease them."""

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
            projection=HIDDEN,
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
                projection=HIDDEN,
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


async def _next_due(collection: AsyncCollection[Doc], due: Doc) -> datetime | None:
    """When the earliest due timer of `collection` fell due; None if none is due."""
    doc = await collection.find_one(due, {"timerAt": 1}, sort=[("timerAt", ASCENDING)])
    return doc["timerAt"] if doc else None
