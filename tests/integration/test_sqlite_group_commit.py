"""The embedded store's connection thread: writes waiting together share one
commit, each caller hears only once its write is on disk, and a write that fails
takes nothing of the others with it (when it ends the whole transaction, the
others run again); and the thread outlives whatever a call raises."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite.connection import GROUP, ConnectionThread
from shared.adapters.sqlite.schema import connect, transaction

Call = Callable[[sqlite3.Connection], Any]


class Refused(Exception):
    pass


@pytest.fixture
async def thread(tmp_path: Path) -> AsyncIterator[ConnectionThread]:
    connection = ConnectionThread(tmp_path / "group.db")
    await connection.call(_insert_table, writes=False)
    yield connection
    await connection.close()


def _insert_table(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY)")


def _insert(
    n: int, *, fail: bool = False, end: bool = False
) -> Callable[[sqlite3.Connection], int]:
    def write(conn: sqlite3.Connection) -> int:
        with transaction(conn):
            conn.execute("INSERT INTO rows (n) VALUES (?)", (n,))
            if end:  # as an I/O error would: the whole transaction is rolled back
                conn.execute("ROLLBACK")
            if fail or end:
                raise Refused(n)
        return n

    return write


async def _held(
    thread: ConnectionThread, writes: list[Call], *, reads: tuple[Call, ...] = ()
) -> tuple[list[Any], list[str]]:
    """Run `writes` (and `reads`) as one group: the thread is held busy until all of them
    wait for it. Their results in that order, and the COMMITs the connection ran."""
    commits: list[str] = []
    release = threading.Event()

    def hold(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        release.wait()

    held = asyncio.ensure_future(thread.call(hold, writes=False))
    await asyncio.sleep(0)
    calls = [asyncio.ensure_future(thread.call(write, writes=True)) for write in writes]
    calls += [asyncio.ensure_future(thread.call(read, writes=False)) for read in reads]
    await asyncio.sleep(0.05)  # every call is in the thread's queue
    release.set()
    await held
    results = await asyncio.gather(*calls, return_exceptions=True)
    return results, commits


def _stored(path: Path) -> set[int]:
    """What another process sees in the file."""
    conn = connect(path)
    try:
        return {n for (n,) in conn.execute("SELECT n FROM rows")}
    finally:
        conn.close()


async def test_writes_waiting_together_share_one_commit(
    thread: ConnectionThread, tmp_path: Path
) -> None:
    results, commits = await _held(thread, [_insert(n) for n in range(20)])

    assert results == list(range(20))
    assert commits == ["COMMIT"]
    assert _stored(tmp_path / "group.db") == set(range(20))


async def test_a_write_that_fails_rolls_back_alone(
    thread: ConnectionThread, tmp_path: Path
) -> None:
    writes = [_insert(n, fail=n == 7) for n in range(12)]
    # A second write of a row already written in the same group breaks a constraint.
    writes.append(_insert(3))

    results, commits = await _held(thread, writes)

    assert isinstance(results[7], Refused)
    assert isinstance(results[12], sqlite3.IntegrityError)
    assert [r for i, r in enumerate(results) if i not in (7, 12)] == [
        n for n in range(12) if n != 7
    ]
    assert commits == ["COMMIT"]
    assert _stored(tmp_path / "group.db") == set(range(12)) - {7}


async def test_a_write_that_ends_the_transaction_hears_why_and_the_others_run_again(
    thread: ConnectionThread, tmp_path: Path
) -> None:
    writes = [_insert(n, end=n == 4) for n in range(10)]

    results, commits = await _held(thread, writes)

    assert isinstance(results[4], Refused)
    assert [r for i, r in enumerate(results) if i != 4] == [n for n in range(10) if n != 4]
    assert commits == ["COMMIT"]  # the first transaction never committed
    assert _stored(tmp_path / "group.db") == set(range(10)) - {4}


async def test_a_store_that_cannot_open_its_file_says_so_to_every_caller(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"not a database" * 1000)
    connection = ConnectionThread(path)
    try:
        for _ in range(2):  # each call tries again, and hears why it failed
            with pytest.raises(sqlite3.DatabaseError):
                await asyncio.wait_for(connection.call(_insert(1), writes=True), 10)
    finally:
        await connection.close()


class Stop(BaseException):
    pass


async def test_a_call_that_raises_any_exception_leaves_the_thread_serving(
    thread: ConnectionThread,
) -> None:
    def stop(conn: sqlite3.Connection) -> None:
        raise Stop

    results, _ = await _held(thread, [_insert(1), stop, _insert(2)])

    assert isinstance(results[1], Stop)
    assert results[0::2] == [1, 2]
    with pytest.raises(Stop):
        await thread.call(stop, writes=False)
    assert await thread.call(_insert(3), writes=True) == 3


async def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    connection = ConnectionThread(tmp_path / "closed.db")
    await connection.call(_insert_table, writes=False)
    await connection.close()

    with pytest.raises(RuntimeError, match="closed"):
        await connection.call(_insert(1), writes=True)


async def test_a_caller_hears_only_once_its_write_is_visible_to_others(
    thread: ConnectionThread, tmp_path: Path
) -> None:
    async def write_and_look(n: int) -> bool:
        await thread.call(_insert(n), writes=True)
        return n in _stored(tmp_path / "group.db")

    seen = await asyncio.gather(*(write_and_look(n) for n in range(GROUP * 2)))

    assert all(seen)


async def test_reads_in_a_group_see_committed_rows_only(thread: ConnectionThread) -> None:
    await thread.call(_insert(1), writes=True)
    count = "SELECT count(*) FROM rows"

    results, commits = await _held(
        thread, [_insert(2), _insert(3)], reads=(lambda conn: conn.execute(count).fetchone()[0],)
    )

    # The read was waiting with the writes: it ran before them, outside their transaction.
    assert results == [2, 3, 1]
    assert commits == ["COMMIT"]
