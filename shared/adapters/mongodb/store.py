"""`MongoStore`: the aggregates' mixins composed into the `Store` port, with
the client's lifecycle."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from shared.adapters.documents import Doc
from shared.adapters.mongodb.attempts import MongoAttempts
from shared.adapters.mongodb.campaigns import MongoCampaigns
from shared.adapters.mongodb.claims import MongoClaims
from shared.adapters.mongodb.codes import MongoCodes
from shared.adapters.mongodb.jobs import MongoJobs
from shared.adapters.mongodb.outbox import MongoOutbox
from shared.adapters.mongodb.profiles import MongoProfiles
from shared.adapters.mongodb.redemptions import MongoRedemptions
from shared.adapters.mongodb.schema import MongoSchema
from shared.adapters.mongodb.throttling import MongoFailureWindows


class MongoStore(
    MongoSchema,
    MongoCampaigns,
    MongoCodes,
    MongoAttempts,
    MongoClaims,
    MongoRedemptions,
    MongoOutbox,
    MongoJobs,
    MongoFailureWindows,
    MongoProfiles,
):
    """The `Store` port on MongoDB."""

    @classmethod
    def connect(cls, url: str, database: str, **options: Any) -> MongoStore:
        """A store that owns its client: `close()` closes it."""
        client: AsyncMongoClient[Doc] = AsyncMongoClient(url, tz_aware=True, **options)
        return cls(client[database], client)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def ping(self) -> None:
        await self._db.command("ping")
