"""The embedded store: one SQLite file in WAL mode, for single-node and development use.

Same guarantees as the MongoDB store: each transition is one `BEGIN IMMEDIATE`
transaction that checks the expected state, writes the code and inserts its
events into the outbox table; uniqueness comes from constraints. Several
processes may share the file: SQLite's locks serialise their writes. In a
process, every statement runs on one thread that owns the connection. Commits
are durable (`synchronous = FULL`) before anything is acknowledged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from shared.adapters.documents import (
    Doc,
    campaign_from_doc,
    campaign_to_doc,
    code_from_doc,
    code_to_doc,
    event_to_doc,
    job_from_doc,
    job_to_doc,
    pending_event_from_doc,
    redemption_from_doc,
    redemption_to_doc,
)
from shared.adapters.unreadable import readable, set_aside
from shared.clock import from_ms, to_ms, utcnow
from shared.domain import attempts, model
from shared.domain.model import (
    AttemptState,
    Campaign,
    CampaignFilter,
    Change,
    Code,
    CodeRef,
    Job,
    Redemption,
    ReplyTo,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import normalise
from shared.domain.states import RESETTABLE, CodeState
from shared.ports import Due, PendingEvents

T = TypeVar("T")
BUSY_TIMEOUT_MS = 30_000
RESET_BATCH = 1_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    code_type TEXT PRIMARY KEY,
    scan_norm TEXT UNIQUE,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS slots (
    code_type TEXT NOT NULL,
    redemption_id TEXT NOT NULL,
    PRIMARY KEY (code_type, redemption_id)
);
CREATE TABLE IF NOT EXISTS shared_claims (
    code_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redemption_id TEXT NOT NULL,
    PRIMARY KEY (code_type, user_id)
);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    code_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    code_state TEXT NOT NULL,
    redeemed_at INTEGER,
    doc TEXT NOT NULL,
    UNIQUE (code_type, user_id)
);
CREATE TABLE IF NOT EXISTS codes (
    id TEXT PRIMARY KEY,
    code_type TEXT NOT NULL,
    scan_norm TEXT NOT NULL,
    code_state TEXT NOT NULL,
    redeemed_by_user_id TEXT,
    redeemed_at INTEGER,
    job_id TEXT,
    doc TEXT NOT NULL,
    UNIQUE (code_type, scan_norm)
);
CREATE INDEX IF NOT EXISTS codes_by_job ON codes (job_id, id) WHERE job_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS codes_by_scan ON codes (scan_norm);
CREATE INDEX IF NOT EXISTS codes_by_state ON codes (code_type, code_state);
CREATE INDEX IF NOT EXISTS codes_in_order ON codes (code_type, id);
CREATE INDEX IF NOT EXISTS codes_by_user ON codes (redeemed_by_user_id, code_type)
    WHERE code_state = 'Redeemed';
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    code_id TEXT NOT NULL,
    shared INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS redemptions (
    id TEXT PRIMARY KEY,
    code_type TEXT,
    accepted_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    reply_pending INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS redemptions_replying ON redemptions (reply_pending)
    WHERE reply_pending = 1;
CREATE INDEX IF NOT EXISTS redemptions_recent ON redemptions (code_type, accepted_at);
CREATE INDEX IF NOT EXISTS redemptions_latest ON redemptions (accepted_at);
"""
# Columns added after the first release, for files made before them.
MIGRATIONS = {
    "codes": {"timer_at": "INTEGER"},
    "instances": {"timer_at": "INTEGER"},
    "outbox": {"set_aside": "INTEGER NOT NULL DEFAULT 0"},
}
TIMER_INDEXES = """
CREATE INDEX IF NOT EXISTS codes_by_timer ON codes (timer_at) WHERE timer_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS instances_by_timer ON instances (timer_at) WHERE timer_at IS NOT NULL;
"""


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return {"$date": to_ms(value)}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> object:
    """An instant from its tag `{"$date": ms}`; any other object as it is.

    No key of a caller's map is stored with a `$` (`documents.escaped`), so a
    tag is always an instant. Files of the previous format may hold a caller's
    own `{"$date": x}`: it stays a map unless x is a whole number of
    milliseconds in range (and `documents.unescaped` gives those back as maps).
    """
    ms = obj.get("$date") if len(obj) == 1 else None
    if type(ms) is not int:
        return obj
    try:
        return from_ms(ms)
    except (OverflowError, ValueError, OSError):
        return obj


def dumps(doc: Doc) -> str:
    return json.dumps(doc, default=_encode, separators=(",", ":"))


def loads(text: str) -> Doc:
    doc: Doc = json.loads(text, object_hook=_decode)
    return doc


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the file's write lock at once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteStore:
    """The `Store` port on SQLite."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            # Each commit reaches the disk before it returns: a job is acknowledged
            # after its commit, so a power loss must not undo what was acknowledged.
            conn.execute("PRAGMA synchronous = FULL")
            self._conn = conn
        return self._conn

    async def prepare(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.executescript(SCHEMA)
            with _transaction(conn):
                for table, columns in MIGRATIONS.items():
                    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                    for name, kind in columns.items():
                        if name not in have:
                            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            conn.executescript(TIMER_INDEXES)

        await self._run(create)

    async def close(self) -> None:
        def close(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        if self._conn is not None:
            await self._run(close)
        self._thread.shutdown(wait=True)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    # Campaigns

    async def create_campaign(self, campaign: Campaign) -> None:
        doc = campaign_to_doc(campaign)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO campaigns (code_type, scan_norm, doc) VALUES (?, ?, ?)",
                    (campaign.code_type, doc.get("scanNorm"), dumps(doc)),
                )
            except sqlite3.IntegrityError as exc:
                if "scan_norm" in str(exc):
                    raise DomainError(
                        ReasonCode.SCAN_CODE_EXISTS,
                        f"another shared campaign has scan code {campaign.scan_code}",
                    ) from None
                raise DomainError(
                    ReasonCode.CODE_TYPE_EXISTS, f"campaign {campaign.code_type} exists"
                ) from None

        await self._run(insert)

    async def find_shared_campaign(self, scan_norm: str) -> Campaign | None:
        row = await self._one("SELECT doc FROM campaigns WHERE scan_norm = ?", scan_norm)
        return campaign_from_doc(loads(row)) if row else None

    async def get_campaign(self, code_type: str) -> Campaign | None:
        row = await self._one("SELECT doc FROM campaigns WHERE code_type = ?", code_type)
        return campaign_from_doc(loads(row)) if row else None

    async def list_campaigns(
        self, where: CampaignFilter, *, skip: int, limit: int
    ) -> list[Campaign]:
        return (await self._campaigns_where(where))[skip : skip + limit]

    async def count_campaigns(self, where: CampaignFilter) -> int:
        return len(await self._campaigns_where(where))

    async def _campaigns_where(self, where: CampaignFilter) -> list[Campaign]:
        # Campaigns number in the thousands at most: filter them here, with the
        # domain's own definition, rather than mirror every field in columns.
        rows = await self._all("SELECT doc FROM campaigns ORDER BY code_type")
        return [c for c in (campaign_from_doc(loads(r)) for r in rows) if where.matches(c)]

    async def update_campaign(
        self, code_type: str, version: int, fields: Mapping[str, Any], now: datetime
    ) -> Campaign | None:
        def update(conn: sqlite3.Connection) -> Campaign | None:
            with _transaction(conn):
                row = conn.execute(
                    "SELECT doc FROM campaigns WHERE code_type = ?", (code_type,)
                ).fetchone()
                campaign = campaign_from_doc(loads(row[0])) if row else None
                if campaign is None or campaign.version != version:
                    return None
                changed = dataclasses.replace(
                    campaign, **fields, version=version + 1, updated_at=now
                )
                conn.execute(
                    "UPDATE campaigns SET doc = ? WHERE code_type = ?",
                    (dumps(campaign_to_doc(changed)), code_type),
                )
                return changed

        return await self._run(update)

    # Codes

    async def add_code(self, code: Code) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                _insert_code(conn, code)
            except sqlite3.IntegrityError:
                raise DomainError(
                    ReasonCode.SCAN_CODE_EXISTS,
                    f"campaign {code.code_type} already has scan code {code.scan_code}",
                ) from None

        await self._run(insert)

    async def get_code(self, ref: CodeRef) -> Code | None:
        return await self._run(lambda conn: _select_code(conn, ref))

    async def find_codes(self, scan_norm: str, *, limit: int) -> list[Code]:
        rows = await self._all(
            "SELECT doc FROM codes WHERE scan_norm = ? LIMIT ?", scan_norm, limit
        )
        return [code_from_doc(loads(r)) for r in rows]

    async def apply(
        self,
        ref: CodeRef,
        changes: Sequence[Change],
        *,
        redemption_id: str | None = None,
        version: int | None = None,
        attempt: int | None = None,
    ) -> Code | None:
        def transition(conn: sqlite3.Connection) -> Code | None:
            with _transaction(conn):
                code = _select_code(conn, ref)
                if code is None or not model.expected(
                    code, changes, redemption_id, version, attempt
                ):
                    return None
                code = _with_events(conn, code, changes, shared=ref.is_shared)
                _write(conn, ref, code)
                return code

        return await self._run(transition)

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
        def update(conn: sqlite3.Connection) -> Code | None:
            with _transaction(conn):
                code = _select_code(conn, ref)
                if code is None or not model.on_attempt(
                    code, redemption_id, attempt, state, attempt_state
                ):
                    return None
                code = dataclasses.replace(code, **fields)
                _write(conn, ref, code)
                return code

        return await self._run(update)

    async def take_due(self, now: datetime, lease_s: float, *, limit: int) -> list[Due]:
        def take(conn: sqlite3.Connection) -> list[Due]:
            due: list[tuple[int, str, str, str]] = []
            with _transaction(conn):
                for table in ("codes", "instances"):
                    due += [
                        (timer_at, table, key, doc)
                        for timer_at, key, doc in conn.execute(
                            f"SELECT timer_at, id, doc FROM {table} WHERE timer_at <= ?"
                            " ORDER BY timer_at LIMIT ?",
                            (to_ms(now), limit),
                        )
                    ]
                taken: list[Due] = []
                for _, table, key, doc in sorted(due):  # earliest first, of either table
                    if len(taken) == limit:
                        break
                    try:
                        code = code_from_doc(loads(doc))
                    except Exception as error:
                        set_aside(f"{table} timer", key, error)  # looked at again after a lease
                        conn.execute(
                            f"UPDATE {table} SET timer_at = ? WHERE id = ?",
                            (to_ms(now + timedelta(seconds=lease_s)), key),
                        )
                        continue
                    user = code.redeemed_by_user_id if table == "instances" else None
                    ref = CodeRef(code.code_type, normalise(code.scan_code), user)
                    leased = attempts.lease(code, now, lease_s)
                    _write(conn, ref, dataclasses.replace(code, timer_at=leased))
                    taken.append(Due(ref, code))
            return taken

        return await self._run(take)

    async def set_custom_code_info(
        self, code_type: str, scan_norm: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code | None:
        def update(conn: sqlite3.Connection) -> Code | None:
            with _transaction(conn):
                code = _select_code(conn, CodeRef(code_type, scan_norm))
                if code is None or code.version != version:
                    return None
                code = dataclasses.replace(
                    code, custom_code_info=dict(info), version=version + 1, updated_at=utcnow()
                )
                _update_code(conn, code)
                return code

        return await self._run(update)

    async def reserve_user(self, code_type: str, user_id: str, redemption_id: str) -> str:
        def reserve(conn: sqlite3.Connection) -> str:
            with _transaction(conn):
                conn.execute(
                    "INSERT OR IGNORE INTO shared_claims (code_type, user_id, redemption_id)"
                    " VALUES (?, ?, ?)",
                    (code_type, user_id, redemption_id),
                )
                row = conn.execute(
                    "SELECT redemption_id FROM shared_claims WHERE code_type = ? AND user_id = ?",
                    (code_type, user_id),
                ).fetchone()
                return str(row[0])

        return await self._run(reserve)

    async def release_user(self, code_type: str, user_id: str, redemption_id: str) -> None:
        await self._write(
            "DELETE FROM shared_claims WHERE code_type = ? AND user_id = ? AND redemption_id = ?",
            code_type,
            user_id,
            redemption_id,
        )

    async def take_slot(self, code_type: str, redemption_id: str, now: datetime) -> bool:
        def take(conn: sqlite3.Connection) -> bool:
            with _transaction(conn):
                if _holds_slot(conn, code_type, redemption_id):
                    return True
                row = conn.execute(
                    "SELECT doc FROM campaigns WHERE code_type = ?", (code_type,)
                ).fetchone()
                campaign = campaign_from_doc(loads(row[0])) if row else None
                if campaign is None or not _open(campaign, now):
                    return False
                conn.execute(
                    "INSERT INTO slots (code_type, redemption_id) VALUES (?, ?)",
                    (code_type, redemption_id),
                )
                _count_slot(conn, campaign, +1)
                return True

        return await self._run(take)

    async def release_slot(self, code_type: str, redemption_id: str, *, refund: bool) -> None:
        def release(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                if not _holds_slot(conn, code_type, redemption_id):
                    return
                conn.execute(
                    "DELETE FROM slots WHERE code_type = ? AND redemption_id = ?",
                    (code_type, redemption_id),
                )
                row = conn.execute(
                    "SELECT doc FROM campaigns WHERE code_type = ?", (code_type,)
                ).fetchone()
                if refund and row:
                    _count_slot(conn, campaign_from_doc(loads(row[0])), -1)

        await self._run(release)

    async def add_instance(self, instance: Code, changes: Sequence[Change]) -> tuple[Code, bool]:
        def add(conn: sqlite3.Connection) -> tuple[Code, bool]:
            owner = CodeRef(instance.code_type, "", changes[0].event.user_id)
            with _transaction(conn):
                existing = _select_code(conn, owner)
                if existing is not None:
                    return existing, False
                code = _with_events(conn, instance, changes, shared=True)
                _write_instance(conn, code, insert=True)
                return code, True

        return await self._run(add)

    async def redeemed_codes(self, user_id: str, code_type: str | None) -> list[Code]:
        narrow = " AND code_type = ?" if code_type is not None else ""
        args = (user_id,) if code_type is None else (user_id, code_type)
        rows = await self._all(
            "SELECT doc FROM codes WHERE redeemed_by_user_id = ? AND code_state = 'Redeemed'"
            + narrow
            + " UNION ALL SELECT doc FROM instances WHERE user_id = ?"
            " AND code_state = 'Redeemed'" + narrow,
            *args,
            *args,
        )
        codes = [code_from_doc(loads(r)) for r in rows]
        return sorted(codes, key=lambda code: code.redeemed_at or code.updated_at)

    # Bulk: generation jobs, import and export

    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        def insert(conn: sqlite3.Connection) -> list[bool]:
            added = []
            with _transaction(conn):
                for code in codes:
                    try:
                        _insert_code(conn, code)
                        added.append(True)
                    except sqlite3.IntegrityError:
                        added.append(False)
            return added

        return await self._run(insert)

    async def codes_of(
        self, code_type: str, *, job_id: str | None = None, batch: int = 1000
    ) -> AsyncIterator[list[Code]]:
        column, value = ("job_id", job_id) if job_id else ("code_type", code_type)
        query = f"SELECT id, doc FROM codes WHERE {column} = ? AND id > ? ORDER BY id LIMIT ?"
        after = ""
        while True:
            rows: list[tuple[str, str]] = await self._run(
                functools.partial(_fetch_all, query=query, args=(value, after, batch))
            )
            if not rows:
                return
            yield list(readable(rows, lambda doc: code_from_doc(loads(doc)), "code"))
            after = rows[-1][0]

    async def count_job_codes(self, job_id: str) -> int:
        return int(await self._one("SELECT count(*) FROM codes WHERE job_id = ?", job_id) or 0)

    async def create_job(self, job: Job) -> None:
        await self._write(
            "INSERT INTO jobs (id, doc) VALUES (?, ?)", job.job_id, dumps(job_to_doc(job))
        )

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._one("SELECT doc FROM jobs WHERE id = ?", job_id)
        return job_from_doc(loads(row)) if row else None

    async def update_job(self, job: Job) -> None:
        await self._write(
            "UPDATE jobs SET doc = ? WHERE id = ?", dumps(job_to_doc(job)), job.job_id
        )

    # Operator operations

    async def inventory(self, code_type: str, *, shared: bool) -> dict[CodeState, int]:
        table = "instances" if shared else "codes"
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT code_state, count(*) FROM {table} WHERE code_type = ? GROUP BY code_state",
                (code_type,),
            ).fetchall()
        )
        counts = dict.fromkeys(CodeState, 0)
        counts.update({CodeState(state): n for state, n in rows})
        return counts

    async def delete_codes(self, code_type: str) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            with _transaction(conn):
                return conn.execute(
                    "DELETE FROM codes WHERE code_type = ? AND code_state != ?"
                    " AND timer_at IS NULL",
                    (code_type, CodeState.IN_PROGRESS.value),
                ).rowcount

        return await self._run(delete)

    async def reset_codes(
        self, code_type: str, to: CodeState, reset_id: str, by: str, now: datetime
    ) -> int:
        states = tuple(state.value for state in RESETTABLE)
        marks = ",".join("?" * len(states))

        def reset_batch(conn: sqlite3.Connection, *, after: str) -> tuple[int, str | None]:
            with _transaction(conn):
                rows = conn.execute(
                    f"SELECT doc FROM codes WHERE code_type = ? AND code_state IN ({marks})"
                    " AND timer_at IS NULL AND id > ? ORDER BY id LIMIT ?",
                    (code_type, *states, after, RESET_BATCH),
                ).fetchall()
                for (doc,) in rows:
                    code = code_from_doc(loads(doc))
                    change = model.reset(
                        code, to, now=now, by=by, event_id=f"{reset_id}:{code.redemption_code_id}"
                    )
                    _update_code(conn, _with_events(conn, code, [change], shared=False))
            last = code_from_doc(loads(rows[-1][0])).redemption_code_id if rows else None
            return len(rows), last

        total, after = 0, ""
        while True:
            count, last = await self._run(functools.partial(reset_batch, after=after))
            total += count
            if last is None or count < RESET_BATCH:
                return total
            after = last

    async def recent_redemptions(
        self, code_type: str | None, *, limit: int, before: datetime | None
    ) -> list[Redemption]:
        where: list[str] = ["1 = 1"]
        args: list[object] = []
        if code_type is not None:
            where.append("code_type = ?")
            args.append(code_type)
        if before is not None:
            where.append("accepted_at < ?")
            args.append(to_ms(before))
        rows = await self._all(
            f"SELECT doc FROM redemptions WHERE {' AND '.join(where)}"
            " ORDER BY accepted_at DESC LIMIT ?",
            *args,
            limit,
        )
        return [redemption_from_doc(loads(r)) for r in rows]

    # Redemptions

    async def open_redemption(self, redemption: Redemption) -> Redemption | None:
        def insert(conn: sqlite3.Connection) -> Redemption | None:
            with _transaction(conn):
                existing = _select_redemption(conn, redemption.redemption_id)
                if existing is None:
                    _write_redemption(conn, redemption, insert=True)
                return existing

        return await self._run(insert)

    async def add_reply(self, redemption_id: str, reply: ReplyTo) -> None:
        await self._update_redemption(
            redemption_id,
            lambda r: dataclasses.replace(r, replies=(*r.replies, reply)),
        )

    async def finish_redemption(self, redemption: Redemption) -> Redemption:
        def finish(stored: Redemption) -> Redemption:
            if stored.status.is_terminal:
                return stored
            return model.with_outcome(stored, redemption)

        finished = await self._update_redemption(redemption.redemption_id, finish)
        if finished is None:
            raise LookupError(f"redemption {redemption.redemption_id} was never opened")
        return finished

    async def get_redemption(self, redemption_id: str) -> Redemption | None:
        row = await self._one("SELECT doc FROM redemptions WHERE id = ?", redemption_id)
        return redemption_from_doc(loads(row)) if row else None

    async def _update_redemption(
        self, redemption_id: str, change: Callable[[Redemption], Redemption]
    ) -> Redemption | None:
        def update(conn: sqlite3.Connection) -> Redemption | None:
            with _transaction(conn):
                stored = _select_redemption(conn, redemption_id)
                if stored is None:
                    return None
                changed = change(stored)
                if changed != stored:
                    _write_redemption(conn, changed, insert=False)
                return changed

        return await self._run(update)

    # Outbox and replies

    async def pending_events(self, *, limit: int) -> list[PendingEvents]:
        def read(conn: sqlite3.Connection) -> list[PendingEvents]:
            codes = conn.execute(
                "SELECT code_id, shared FROM outbox WHERE set_aside = 0"
                " GROUP BY code_id ORDER BY min(seq) LIMIT ?",
                (limit,),
            ).fetchall()
            found: list[PendingEvents] = []
            for code_id, shared in codes:
                rows = conn.execute(
                    "SELECT doc FROM outbox WHERE code_id = ? ORDER BY seq", (code_id,)
                )
                try:
                    events = tuple(pending_event_from_doc(loads(r[0])) for r in rows)
                except Exception as error:
                    set_aside("outbox", code_id, error)
                    with _transaction(conn):
                        conn.execute(
                            "UPDATE outbox SET set_aside = 1 WHERE code_id = ?", (code_id,)
                        )
                    continue
                found.append(PendingEvents(code_id, events, "instances" if shared else "codes"))
            return found

        return await self._run(read)

    async def mark_relayed(self, relayed: Sequence[PendingEvents]) -> None:
        ids = [(p.event.event_id,) for item in relayed for p in item.events]

        def delete(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany("DELETE FROM outbox WHERE event_id = ?", ids)

        if ids:
            await self._run(delete)

    async def pending_replies(self, *, limit: int) -> list[Redemption]:
        rows = await self._all("SELECT doc FROM redemptions WHERE reply_pending = 1 LIMIT ?", limit)
        return [redemption_from_doc(loads(r)) for r in rows]

    async def mark_replied(self, replied: Sequence[Redemption]) -> None:
        for sent in replied:
            await self._update_redemption(sent.redemption_id, _without_replies(sent.replies))

    async def _write(self, statement: str, *args: object) -> None:
        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute(statement, args)

        await self._run(write)

    async def _one(self, query: str, *args: object) -> Any:
        def read(conn: sqlite3.Connection) -> Any:
            row = conn.execute(query, args).fetchone()
            return row[0] if row else None

        return await self._run(read)

    async def _all(self, query: str, *args: object) -> list[Any]:
        return await self._run(lambda conn: [row[0] for row in conn.execute(query, args)])


def _fetch_all(conn: sqlite3.Connection, *, query: str, args: tuple[object, ...]) -> list[Any]:
    return conn.execute(query, args).fetchall()


def _select_code(conn: sqlite3.Connection, ref: CodeRef) -> Code | None:
    if ref.user_id is not None:
        query = "SELECT doc FROM instances WHERE code_type = ? AND user_id = ?"
        row = conn.execute(query, (ref.code_type, ref.user_id)).fetchone()
    else:
        query = "SELECT doc FROM codes WHERE code_type = ? AND scan_norm = ?"
        row = conn.execute(query, (ref.code_type, ref.scan_norm)).fetchone()
    return code_from_doc(loads(row[0])) if row else None


def _with_events(
    conn: sqlite3.Connection, code: Code, changes: Sequence[Change], *, shared: bool
) -> Code:
    """Apply `changes`, inserting each one's event into the outbox."""
    for change in changes:
        code = model.applied(code, change)
        conn.execute(
            "INSERT INTO outbox (event_id, code_id, shared, doc) VALUES (?, ?, ?, ?)",
            (
                change.event.event_id,
                code.redemption_code_id,
                int(shared),
                dumps(event_to_doc(change.event, code)),
            ),
        )
    return code


def _write(conn: sqlite3.Connection, ref: CodeRef, code: Code) -> None:
    if ref.is_shared:
        _write_instance(conn, code, insert=False)
    else:
        _update_code(conn, code)


def _write_instance(conn: sqlite3.Connection, code: Code, *, insert: bool) -> None:
    values = (
        code.code_state.value,
        to_ms(code.redeemed_at),
        to_ms(code.timer_at),
        dumps(code_to_doc(code)),
        code.redemption_code_id,
    )
    if insert:
        conn.execute(
            "INSERT INTO instances (code_state, redeemed_at, timer_at, doc, id, code_type,"
            " user_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*values, code.code_type, code.redeemed_by_user_id),
        )
    else:
        conn.execute(
            "UPDATE instances SET code_state = ?, redeemed_at = ?, timer_at = ?, doc = ?"
            " WHERE id = ?",
            values,
        )


def _holds_slot(conn: sqlite3.Connection, code_type: str, redemption_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM slots WHERE code_type = ? AND redemption_id = ?",
        (code_type, redemption_id),
    ).fetchone()
    return row is not None


def _open(campaign: Campaign, now: datetime) -> bool:
    """Whether a shared campaign gives a slot at `now` (the filter of MongoStore.take_slot)."""
    return (
        not campaign.is_disabled
        and (campaign.valid_start is None or campaign.valid_start <= now)
        and (campaign.valid_end is None or now < campaign.valid_end)
        and (
            campaign.max_redemptions is None or campaign.redemption_count < campaign.max_redemptions
        )
    )


def _count_slot(conn: sqlite3.Connection, campaign: Campaign, delta: int) -> None:
    counted = dataclasses.replace(campaign, redemption_count=campaign.redemption_count + delta)
    conn.execute(
        "UPDATE campaigns SET doc = ? WHERE code_type = ?",
        (dumps(campaign_to_doc(counted)), campaign.code_type),
    )


def _insert_code(conn: sqlite3.Connection, code: Code) -> None:
    conn.execute(
        "INSERT INTO codes (id, code_type, scan_norm, code_state, redeemed_by_user_id,"
        " redeemed_at, job_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            code.redemption_code_id,
            code.code_type,
            normalise(code.scan_code),
            code.code_state.value,
            code.redeemed_by_user_id,
            to_ms(code.redeemed_at),
            code.job_id,
            dumps(code_to_doc(code)),
        ),
    )


def _update_code(conn: sqlite3.Connection, code: Code) -> None:
    conn.execute(
        "UPDATE codes SET code_state = ?, redeemed_by_user_id = ?, redeemed_at = ?,"
        " timer_at = ?, doc = ? WHERE id = ?",
        (
            code.code_state.value,
            code.redeemed_by_user_id,
            to_ms(code.redeemed_at),
            to_ms(code.timer_at),
            dumps(code_to_doc(code)),
            code.redemption_code_id,
        ),
    )


def _without_replies(sent: Sequence[ReplyTo]) -> Callable[[Redemption], Redemption]:
    def drop(stored: Redemption) -> Redemption:
        return dataclasses.replace(
            stored, replies=tuple(r for r in stored.replies if r not in sent)
        )

    return drop


def _select_redemption(conn: sqlite3.Connection, redemption_id: str) -> Redemption | None:
    row = conn.execute("SELECT doc FROM redemptions WHERE id = ?", (redemption_id,)).fetchone()
    return redemption_from_doc(loads(row[0])) if row else None


def _write_redemption(conn: sqlite3.Connection, r: Redemption, *, insert: bool) -> None:
    pending = int(r.status.is_terminal and bool(r.replies))
    doc = dumps(redemption_to_doc(r))
    if insert:
        conn.execute(
            "INSERT INTO redemptions (id, code_type, accepted_at, status, reply_pending, doc)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (r.redemption_id, r.code_type, to_ms(r.accepted_at), r.status.value, pending, doc),
        )
    else:
        conn.execute(
            "UPDATE redemptions SET code_type = ?, status = ?, reply_pending = ?, doc = ?"
            " WHERE id = ?",
            (r.code_type, r.status.value, pending, doc, r.redemption_id),
        )
