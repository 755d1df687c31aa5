"""Bulk-load jobs and the codes they add."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import BulkWriteError

from shared.adapters.documents import Doc, code_from_doc, code_to_doc, job_from_doc, job_to_doc
from shared.adapters.mongodb.base import MongoBase
from shared.adapters.unreadable import readable
from shared.domain.generation import collection_paused
from shared.domain.model import Code, Job

DUPLICATE_KEY = 11000


class MongoJobs(MongoBase):
    """Bulk-load jobs and their codes."""

    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        if not codes:
            return []
        with collection_paused():
            docs = [code_to_doc(c) for c in codes]
        try:  # one unordered bulk write: a code already there stops none of the others
            await self._codes.insert_many(docs, ordered=False)
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
            with collection_paused():
                codes = list(readable(((d["_id"], d) for d in docs), code_from_doc, "code"))
            yield codes
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

    async def hand_out_job(self, job_id: str, now: datetime) -> Job | None:
        doc = await self._jobs.find_one_and_update(
            {"_id": job_id, "handedOutAt": None},
            {"$set": {"handedOutAt": now, "updatedAt": now}},
            return_document=ReturnDocument.AFTER,
        )
        return job_from_doc(doc) if doc else None

    async def keep_plain_codes(
        self, job_id: str, codes: Mapping[str, str], until: datetime
    ) -> None:
        if not codes:
            return
        docs = [
            {"_id": code_id, "jobId": job_id, "scanCode": scan, "expiresAt": until}
            for code_id, scan in codes.items()
        ]
        try:
            await self._plain_codes.insert_many(docs, ordered=False)
        except BulkWriteError as exc:  # kept already by an earlier delivery of the job
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise

    async def plain_codes(self, code_ids: Sequence[str], now: datetime) -> dict[str, str]:
        query = {"_id": {"$in": list(code_ids)}, "expiresAt": {"$gt": now}}
        return {doc["_id"]: doc["scanCode"] async for doc in self._plain_codes.find(query)}

    async def drop_plain_codes(self, job_id: str, now: datetime) -> None:
        await self._plain_codes.delete_many(
            {"$or": [{"jobId": job_id}, {"expiresAt": {"$lte": now}}]}
        )

    async def purge_plain_codes(self, now: datetime) -> int:
        # The TTL index deletes them too, within a minute of `expiresAt`.
        gone = await self._plain_codes.delete_many({"expiresAt": {"$lte": now}})
        return gone.deleted_count
