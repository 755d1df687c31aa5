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
from shared.domain import attempts
from shared.domain.model import AttemptState, Code, CodeRef
from shared.domain.states import CodeState
from shared.ports import Due, Timers


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

    async def timers(self, now: datetime) -> Timers:
        pending = due = 0
        for collection in (self._codes, self._instances):
            # `$type` as in the timer index's filter, so that the partial index is used.
            pending += await collection.count_documents({"timerAt": {"$type": "date"}})
            due += await collection.count_documents({"timerAt": {"$type": "date", "$lte": now}})
        return Timers(pending, due)

    async def take_due(self, now: datetime, lease_s: float, *, limit: int) -> list[Due]:
        # `$type` as in the index's filter, so that the partial index is used.
        due = {"timerAt": {"$type": "date", "$lte": now}}
        taken: list[Due] = []
        # The earliest first, of either collection: each one's next due code, compared.
        heads = {c: await _next_due(c, due) for c in (self._codes, self._instances)}
        while len(taken) < limit:
            waiting = [(d["timerAt"], n, c, d) for n, (c, d) in enumerate(heads.items()) if d]
            if not waiting:
                break
            _, _, collection, head = min(waiting)
            if took := await self._take(collection, head, now, lease_s):
                taken.append(took)
            heads[collection] = await _next_due(collection, due)
        return taken

    async def _take(
        self, collection: AsyncCollection[Doc], head: Doc, now: datetime, lease_s: float
    ) -> Due | None:
        """Lease the due code read as `head`, unless another worker took it meanwhile."""
        try:
            leased = attempts.lease(code_from_doc(head), now, lease_s)
        except Exception:  # unreadable: leased all the same, and set aside once taken
            leased = now + timedelta(seconds=lease_s)
        # The lease is reckoned from the timer and deadline read: taken only while they hold.
        doc = await collection.find_one_and_update(
            {key: head.get(key) for key in ("_id", "timerAt", "deadlineAt")},
            {"$set": {"timerAt": leased}},
            projection=HIDDEN,
        )
        if doc is None:  # another worker took it
            return None
        try:
            code = code_from_doc(doc)
        except Exception as error:  # leased: looked at again when the lease ends
            set_aside(f"{collection.name} timer", doc["_id"], error)
            return None
        user = code.redeemed_by_user_id if collection is self._instances else None
        return Due(CodeRef(code.code_type, doc["scanNorm"], user), code)


async def _next_due(collection: AsyncCollection[Doc], due: Doc) -> Doc | None:
    """The code of `collection` whose timer fell due earliest; None if none is due."""
    return await collection.find_one(due, HIDDEN, sort=[("timerAt", ASCENDING)])
