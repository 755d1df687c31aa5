"""Profiles and sessions: a profile is unique by its app's identity (a unique index),
so that of concurrent adds one inserts and the others read it; a session's kept answer
moves forward only, by one conditional update, and a TTL index removes it once expired."""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from shared import topology
from shared.adapters.documents import (
    Doc,
    profile_from_doc,
    profile_to_doc,
    session_from_doc,
    session_to_doc,
)
from shared.adapters.mongodb.base import MongoBase
from shared.domain.profiles import IdentityKind, Profile, Session


class MongoProfiles(MongoBase):
    """The brainCloud front door's profiles and sessions."""

    @property
    def _profiles(self) -> AsyncCollection[Doc]:
        return self._db[topology.PROFILES]

    @property
    def _sessions(self) -> AsyncCollection[Doc]:
        return self._db[topology.SESSIONS]

    async def add_profile(self, profile: Profile) -> Profile:
        try:
            await self._profiles.insert_one(profile_to_doc(profile))
            return profile
        except DuplicateKeyError:
            found = await self.find_profile(profile.app_id, profile.kind, profile.external_id)
        if found is None:  # the profile id taken, not the identity
            raise RuntimeError(f"profile id {profile.profile_id!r} is taken by another identity")
        return found

    async def find_profile(
        self, app_id: str, kind: IdentityKind, external_id: str
    ) -> Profile | None:
        doc = await self._profiles.find_one(
            {"appId": app_id, "kind": kind.value, "externalId": external_id}
        )
        return profile_from_doc(doc) if doc else None

    async def get_profile(self, profile_id: str) -> Profile | None:
        doc = await self._profiles.find_one({"_id": profile_id})
        return profile_from_doc(doc) if doc else None

    async def open_session(self, session: Session) -> None:
        await self._sessions.insert_one(session_to_doc(session))

    async def get_session(self, session_id: str) -> Session | None:
        doc = await self._sessions.find_one({"_id": session_id})
        return session_from_doc(doc) if doc else None

    async def keep_session(
        self, session_id: str, expires_at: datetime, packet_id: int, answer: str
    ) -> None:
        later = {"$max": {"expiresAt": expires_at}}  # never moved back by a slower packet
        kept = await self._sessions.update_one(
            {
                "_id": session_id,
                "$or": [{"lastPacketId": None}, {"lastPacketId": {"$lte": packet_id}}],
            },
            {"$set": {"lastPacketId": packet_id, "lastAnswer": answer}} | later,
        )
        if kept.matched_count == 0:  # a later packet's answer is kept: only the expiry moves
            await self._sessions.update_one({"_id": session_id}, later)

    async def purge_sessions(self, now: datetime) -> int:
        # The TTL index deletes them too, within a minute of `expiresAt`.
        gone = await self._sessions.delete_many({"expiresAt": {"$lte": now}})
        return gone.deleted_count
