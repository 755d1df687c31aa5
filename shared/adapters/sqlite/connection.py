"""The connection's own thread, which gives the writes waiting for it one commit.

With `synchronous = FULL` every commit waits for the disk, and a worker with
many jobs in flight would wait once a write. So the thread takes every call
waiting when it comes free: the reads one by one, then the writes together in
one transaction, each inside its own savepoint (`schema.transaction` nests).
A write's caller hears its result only after the shared COMMIT has returned,
so nothing acts on a write that is not on disk. A write that fails rolls back
its savepoint alone; one whose error ends the whole transaction (a full disk)
hears that error, and the others run again in a new one; a COMMIT that fails
fails every write it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from shared.adapters.sqlite.schema import connect, shared_transaction

T = TypeVar("T")

# The most writes one commit carries: enough for a worker's prefetch of jobs, few
# enough that the write lock is not held long for other processes.
GROUP = 64


@dataclass(frozen=True, slots=True)
class _Call:
    fn: Callable[[sqlite3.Connection], Any]
    writes: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    # The caller's context variables (its trace, its log context), which `fn` runs in.
    context: contextvars.Context

    def settle(self, value: Any = None, error: BaseException | None = None) -> None:
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits for it
            self.loop.call_soon_threadsafe(_settle, self.future, value, error)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


class ConnectionThread:
    """One connection to the file at `path`, used by one thread that runs the calls."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def call(self, fn: Callable[[sqlite3.Connection], T], *, writes: bool) -> T:
        """`fn(connection)` on the thread; with `writes`, it may share its commit."""
        if self._closed:
            raise RuntimeError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="sqlite", daemon=True)
            self._thread.start()
        self._calls.put(_Call(fn, writes, loop, future, contextvars.copy_context()))
        return await future

    async def close(self) -> None:
        """Finish the calls already waiting, then close the connection and end the thread;
        a call after that is refused."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._calls.put(None)
        await asyncio.get_running_loop().run_in_executor(None, thread.join)

    def _serve(self) -> None:
        conn: sqlite3.Connection | None = None
        stopping = False
        while not stopping:
            calls, stopping = self._waiting()
            if conn is None:
                try:
                    conn = connect(self._path)
                except BaseException as error:  # told to those waiting; the next call tries again
                    _fail(calls, error)
                    continue
            writes = []
            for call in calls:
                if call.writes:
                    writes.append(call)
                else:
                    _run(call, conn)
            _write_together(writes, conn)
        if conn is not None:
            conn.close()

    def _waiting(self) -> tuple[list[_Call], bool]:
        """The calls waiting now (at least one, unless the thread is to stop), and whether it is."""
        first = self._calls.get()
        if first is None:
            return [], True
        calls, writes = [first], int(first.writes)
        while writes < GROUP:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            if call is None:
                return calls, True
            calls.append(call)
            writes += call.writes
        return calls, False


def _run(call: _Call, conn: sqlite3.Connection) -> None:
    try:
        call.settle(call.context.run(call.fn, conn))
    except BaseException as error:
        call.settle(error=error)


def _write_together(calls: list[_Call], conn: sqlite3.Connection) -> None:
    if len(calls) <= 1:
        for call in calls:
            _run(call, conn)
        return
    done: list[tuple[Any, BaseException | None]] = []
    ended: int | None = None
    try:
        with shared_transaction(conn):
            for index, call in enumerate(calls):
                done.append(_attempt(call, conn))
                if not conn.in_transaction:
                    ended = index
                    break
            else:
                conn.execute("COMMIT")
    except BaseException as error:  # the transaction could not begin or commit
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # else the next transaction does
                conn.execute("ROLLBACK")
        _fail(calls, error)
        return
    if ended is not None:
        # An error ended the whole transaction, and undid the writes before it too:
        # it is that call's answer, and the others run again in a new one.
        calls[ended].settle(error=done[ended][1] or _ended())
        _write_together(calls[:ended] + calls[ended + 1 :], conn)
        return
    for call, (value, failure) in zip(calls, done, strict=True):
        call.settle(value, failure)


def _attempt(call: _Call, conn: sqlite3.Connection) -> tuple[Any, BaseException | None]:
    try:
        return call.context.run(call.fn, conn), None
    except BaseException as error:
        return None, error


def _ended() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("the transaction ended early")


def _fail(calls: list[_Call], error: BaseException) -> None:
    for call in calls:
        call.settle(error=error)
