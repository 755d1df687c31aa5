"""Profiles and sessions: a profile is unique by its app's identity, so that of
concurrent adds one inserts and the others read it; a session is changed inside a
write transaction, its kept answer moving forward only, and deleted once purged."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import datetime

from shared.adapters.documents import (
    profile_from_doc,
    profile_to_doc,
    session_from_doc,
    session_to_doc,
)
from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.jsontext import dumps, loads
from shared.adapters.sqlite.schema import transaction
from shared.clock import to_ms
from shared.domain.profiles import IdentityKind, Profile, Session

_BY_IDENTITY = "SELECT doc FROM profiles WHERE app_id = ? AND kind = ? AND external_id = ?"


class Profiles(SqliteBase):
    """The brainCloud front door's profiles and sessions."""

    async def add_profile(self, profile: Profile) -> Profile:
        identity = (profile.app_id, profile.kind.value, profile.external_id)

        def add(conn: sqlite3.Connection) -> Profile:
            with transaction(conn):
                # Only the identity's conflict is ignored: a profile id taken raises.
                conn.execute(
                    "INSERT INTO profiles (id, app_id, kind, external_id, doc)"
                    " VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT (app_id, kind, external_id) DO NOTHING",
                    (profile.profile_id, *identity, dumps(profile_to_doc(profile))),
                )
                row = conn.execute(_BY_IDENTITY, identity).fetchone()
                return profile_from_doc(loads(row[0]))

        return await self._run(add, writes=True)

    async def find_profile(
        self, app_id: str, kind: IdentityKind, external_id: str
    ) -> Profile | None:
        row = await self._one(_BY_IDENTITY, app_id, kind.value, external_id)
        return profile_from_doc(loads(row)) if row else None

    async def get_profile(self, profile_id: str) -> Profile | None:
        row = await self._one("SELECT doc FROM profiles WHERE id = ?", profile_id)
        return profile_from_doc(loads(row)) if row else None

    async def open_session(self, session: Session) -> None:
        await self._write(
            "INSERT INTO sessions (id, expires_at, doc) VALUES (?, ?, ?)",
            session.session_id,
            to_ms(session.expires_at),
            dumps(session_to_doc(session)),
        )

    async def get_session(self, session_id: str) -> Session | None:
        row = await self._one("SELECT doc FROM sessions WHERE id = ?", session_id)
        return session_from_doc(loads(row)) if row else None

    async def keep_session(
        self, session_id: str, expires_at: datetime, packet_id: int, answer: str
    ) -> None:
        def keep(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                row = conn.execute(
                    "SELECT doc FROM sessions WHERE id = ?", (session_id,)
                ).fetchone()
                if row is None:
                    return
                kept = _kept(session_from_doc(loads(row[0])), expires_at, packet_id, answer)
                conn.execute(
                    "UPDATE sessions SET expires_at = ?, doc = ? WHERE id = ?",
                    (to_ms(kept.expires_at), dumps(session_to_doc(kept)), session_id),
                )

        await self._run(keep, writes=True)

    async def purge_sessions(self, now: datetime) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                gone = conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (to_ms(now),))
                return gone.rowcount

        return int(await self._run(purge, writes=True))


def _kept(session: Session, expires_at: datetime, packet_id: int, answer: str) -> Session:
    """The expiry never moved back; the answer kept unless a later packet's is."""
    later = dataclasses.replace(session, expires_at=max(session.expires_at, expires_at))
    if session.last_packet_id is not None and session.last_packet_id > packet_id:
        return later
    return dataclasses.replace(later, last_packet_id=packet_id, last_answer=answer)
