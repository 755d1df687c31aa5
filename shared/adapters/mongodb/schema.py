"""The schema: the indexes of every collection, and `prepare()` creating them."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, IndexModel

from shared import topology
from shared.adapters.mongodb.base import MongoBase
from shared.domain.states import CodeState

_TIMERS = IndexModel(
    [("timerAt", ASCENDING)], partialFilterExpression={"timerAt": {"$type": "date"}}
)
_OUTBOX = IndexModel(
    [("outboxSince", ASCENDING)], partialFilterExpression={"outboxPending": {"$gt": 0}}
)


class MongoSchema(MongoBase):
    """The indexes, created by `prepare()`."""

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
        # Gone once every entry has left its window (the TTL monitor runs every minute).
        await self._failure_windows.create_indexes(
            [IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0)]
        )
        # Gone when they expire, if no download took them before.
        await self._plain_codes.create_indexes(
            [
                IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0),
                IndexModel([("jobId", ASCENDING)]),
            ]
        )
        # A profile is one identity of one app: concurrent adds of it make one profile.
        await self._db[topology.PROFILES].create_indexes(
            [
                IndexModel(
                    [("appId", ASCENDING), ("kind", ASCENDING), ("externalId", ASCENDING)],
                    unique=True,
                ),
            ]
        )
        # Gone when they expire (the worker's timer loop purges them too).
        await self._db[topology.SESSIONS].create_indexes(
            [IndexModel([("expiresAt", ASCENDING)], expireAfterSeconds=0)]
        )
        await self._redemptions.create_indexes(
            [
                IndexModel(
                    [("codeType", ASCENDING), ("acceptedAt", DESCENDING), ("_id", DESCENDING)]
                ),
                IndexModel([("acceptedAt", DESCENDING), ("_id", DESCENDING)]),
                IndexModel(
                    [("replyPending", ASCENDING)],
                    partialFilterExpression={"replyPending": True},
                ),
            ]
        )
