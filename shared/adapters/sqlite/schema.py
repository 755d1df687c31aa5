"""The file: its tables and indexes, the columns added since the first
release, the pragmas each connection sets, and the write transaction."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.adapters.files import FILE_MODE, private_file, tighten

BUSY_TIMEOUT_MS = 30_000
# Pages a connection keeps (16 MiB; SQLite's default is 2): a bulk load's batch walks the
# indexes of scan codes, whose pages it would otherwise read again and again.
CACHE_KIB = 16 * 1024
# The files SQLite keeps beside the database in WAL mode.
WAL_FILES = ("-wal", "-shm")

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
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS codes_by_job ON codes (job_id, id) WHERE job_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
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
DROP INDEX IF EXISTS redemptions_recent;
DROP INDEX IF EXISTS redemptions_latest;
CREATE INDEX IF NOT EXISTS redemptions_recent_by_id ON redemptions (code_type, accepted_at, id);
CREATE INDEX IF NOT EXISTS redemptions_latest_by_id ON redemptions (accepted_at, id);
CREATE TABLE IF NOT EXISTS failure_windows (
    scope TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS failure_windows_expiring ON failure_windows (expires_at);
CREATE TABLE IF NOT EXISTS plain_codes (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    scan_code TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS plain_codes_by_job ON plain_codes (job_id);
CREATE INDEX IF NOT EXISTS plain_codes_expiring ON plain_codes (expires_at);
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    external_id TEXT NOT NULL,
    doc TEXT NOT NULL,
    UNIQUE (app_id, kind, external_id)
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiring ON sessions (expires_at);
"""
# The record attributes each table keeps in a column of the same name, besides `doc`.
CAMPAIGN_COLUMNS = frozenset({"code_type"})
CODE_COLUMNS = frozenset(
    {"code_type", "code_state", "redeemed_by_user_id", "redeemed_at", "job_id", "timer_at"}
)
# Columns added after the first release, for files made before them (a code's row
# written before its columns were added reads from its document: `coderows`).
MIGRATIONS = {
    "codes": {
        "timer_at": "INTEGER",
        "scan_code": "TEXT",
        "created_at": "INTEGER",
        "updated_at": "INTEGER",
        "activated_at": "INTEGER",
        "version": "INTEGER",
        "custom_code_info": "TEXT",
    },
    "instances": {"timer_at": "INTEGER"},
    "outbox": {"set_aside": "INTEGER NOT NULL DEFAULT 0"},
}
TIMER_INDEXES = """
CREATE INDEX IF NOT EXISTS codes_by_timer ON codes (timer_at) WHERE timer_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS instances_by_timer ON instances (timer_at) WHERE timer_at IS NOT NULL;
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the file at `path`, made if need be (readable by its owner only, as
    SQLite then makes its WAL and shared-memory files; those there already are made so),
    set up for durable commits and to overwrite what it deletes."""
    private_file(path)
    for companion in WAL_FILES:
        tighten(path.with_name(path.name + companion), FILE_MODE)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # Deleted rows are overwritten with zeros, not left in free pages: a plain code
    # handed out and deleted is not in the file after (a page's older copies in the
    # WAL last until a checkpoint and later commits write over them).
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    # Each commit reaches the disk before it returns: a job is acknowledged
    # after its commit, so a power loss must not undo what was acknowledged.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")  # negative: in KiB
    return conn


def prepare(conn: sqlite3.Connection) -> None:
    """Create the tables and indexes, and add the columns an older file lacks; idempotent."""
    conn.executescript(SCHEMA)
    with transaction(conn):
        for table, columns in MIGRATIONS.items():
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for name, kind in columns.items():
                if name not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    conn.executescript(TIMER_INDEXES)
    conn.executescript(_scan_code_indexes(conn))


def _scan_code_indexes(conn: sqlite3.Connection) -> str:
    """A code is unique by scan code in its campaign and found by scan code alone: one
    index, by scan code then campaign, does both. A file made before it keeps its table's
    constraint (by campaign then scan code) and the second index it needs beside."""
    (table,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'codes'").fetchone()
    if "UNIQUE (code_type, scan_norm)" in table:
        return "CREATE INDEX IF NOT EXISTS codes_by_scan ON codes (scan_norm);"
    return "CREATE UNIQUE INDEX IF NOT EXISTS codes_by_key ON codes (scan_norm, code_type);"


class _Sharing(threading.local):
    """Whether this thread's connection is in a transaction several writes share."""

    active = False


SHARING = _Sharing()


@contextmanager
def shared_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Open a transaction that the `transaction`s inside it join as savepoints; whoever
    opened it commits or rolls it back (`connection.ConnectionThread`)."""
    conn.execute("BEGIN IMMEDIATE")
    SHARING.active = True
    try:
        yield
    finally:
        SHARING.active = False


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that takes the file's write lock at once; inside a shared one,
    a savepoint that rolls back alone."""
    if SHARING.active:
        yield from _savepoint(conn)
        return
    if conn.in_transaction:  # left open by a COMMIT that failed: its writers were told
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("SAVEPOINT part")
    try:
        yield
    except BaseException:
        # An error that ended the whole transaction (a full disk, say) left no savepoint
        # to roll back to: the error itself is what the caller hears.
        if conn.in_transaction:
            conn.execute("ROLLBACK TO part")
            conn.execute("RELEASE part")
        raise
    conn.execute("RELEASE part")
