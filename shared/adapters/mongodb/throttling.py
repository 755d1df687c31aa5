"""Failure windows: one document per throttled scope, changed by a conditional write on
its version, and removed by a TTL index once every entry has left its window."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from shared.adapters.documents import Doc, failure_window_from_doc, failure_window_to_doc
from shared.adapters.mongodb.base import MongoBase
from shared.domain.throttling import FailureWindow, Limit
from shared.ports.throttling import WindowChange


class MongoFailureWindows(MongoBase):
    async def failure_windows(self, scopes: Sequence[str]) -> list[FailureWindow]:
        cursor = self._failure_windows.find({"_id": {"$in": list(scopes)}})
        return [failure_window_from_doc(doc) async for doc in cursor]

    async def change_failure_window(
        self, scope: str, limit: Limit, change: WindowChange
    ) -> FailureWindow:
        # Most scopes have no window (a user who never failed, or whose success cleared
        # it): a change that adds to a window is first written as its first version, one
        # insert; the window is read only when one is there already, or for any other
        # change.
        doc: Doc | None = None
        read = False
        while True:  # until no other writer came between the read and the write
            stored = failure_window_from_doc(doc) if doc else FailureWindow(scope, limit)
            changed = change(stored)
            if read and changed == stored:
                return stored
            writes = changed != stored and (read or bool(changed.entries))
            if writes and await self._write_window(stored, changed, exists=doc is not None):
                return dataclasses.replace(changed, version=stored.version + 1)
            doc = await self._failure_windows.find_one({"_id": scope})
            read = True

    async def _write_window(
        self, stored: FailureWindow, changed: FailureWindow, *, exists: bool
    ) -> bool:
        """Write `changed` if the window is still `stored`; whether it was."""
        expected = {"_id": stored.scope, "version": stored.version}
        if not changed.entries:
            if not exists:
                return True
            return (await self._failure_windows.delete_one(expected)).deleted_count == 1
        doc = failure_window_to_doc(changed) | {"version": stored.version + 1}
        if not exists:
            try:
                await self._failure_windows.insert_one(doc)
            except DuplicateKeyError:
                return False
            return True
        return (await self._failure_windows.replace_one(expected, doc)).matched_count == 1

    async def clear_failure_window(self, scope: str) -> bool:
        return (await self._failure_windows.delete_one({"_id": scope})).deleted_count == 1

    async def live_failure_windows(
        self, now: datetime, *, after: str | None = None, limit: int = 100
    ) -> list[FailureWindow]:
        query = {"expiresAt": {"$gt": now}} | ({"_id": {"$gt": after}} if after else {})
        cursor = self._failure_windows.find(query).sort("_id", ASCENDING).limit(limit)
        return [failure_window_from_doc(doc) async for doc in cursor]
