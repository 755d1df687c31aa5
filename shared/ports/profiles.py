"""The profiles port: the brainCloud front door's profiles and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from shared.domain.profiles import IdentityKind, Profile, Session


class Profiles(Protocol):
    async def add_profile(self, profile: Profile) -> Profile:
        """Keep a new profile and return it; when its app has a profile of the same
        identity (kind and external id) already, return that one and write nothing, so
        that of two clients creating one identity at once both get the same profile."""

    async def find_profile(
        self, app_id: str, kind: IdentityKind, external_id: str
    ) -> Profile | None: ...

    async def get_profile(self, profile_id: str) -> Profile | None: ...

    async def open_session(self, session: Session) -> None: ...

    async def get_session(self, session_id: str) -> Session | None:
        """The session, expired or not (None once it is purged)."""

    async def keep_session(
        self, session_id: str, expires_at: datetime, packet_id: int, answer: str
    ) -> None:
        """Move the session's expiry to `expires_at` and keep `answer` as the answer to
        `packet_id`, unless a later packet's answer is kept already."""

    async def purge_sessions(self, now: datetime) -> int:
        """Delete sessions expired at `now`; how many. (MongoDB also has a TTL index.)"""
