"""The state every part of the MongoDB store shares: the database, its
collections, and where a code reference is kept."""

from __future__ import annotations

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from shared import topology
from shared.adapters.documents import Doc
from shared.domain.model import CodeRef


class MongoBase:
    """The database and its collections, which each aggregate's mixin works on."""

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
        self._failure_windows: AsyncCollection[Doc] = db[topology.FAILURE_WINDOWS]
        self._plain_codes: AsyncCollection[Doc] = db[topology.PLAIN_CODES]
        # Where outboxes live, by the tag `PendingEvents.source` carries.
        self._outboxes = {
            topology.CODES: self._codes,
            topology.INSTANCES: self._instances,
            topology.DELETED_OUTBOXES: self._deleted,
        }

    def _where(self, ref: CodeRef) -> tuple[AsyncCollection[Doc], Doc]:
        if ref.user_id is not None:
            return self._instances, {"codeType": ref.code_type, "redeemedByUserId": ref.user_id}
        return self._codes, {"codeType": ref.code_type, "scanNorm": ref.key}
