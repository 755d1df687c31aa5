"""GenerateCodes: new codes of a format, stored until `quantity` are new.

Codes come from a cryptographic random source; uniqueness is the store's
(a collision is simply not added, and another code is drawn). A job records
its progress as it goes and resumes from what is stored after a crash.

A job its format cannot carry out ends `Failed` with the reason: a format
with too little randomness for the job (`require_entropy`, which the intake
also checks against the campaign's whole inventory before it starts a job),
or draws that keep finding no new code, which stop after `MAX_BARREN_ROUNDS`
instead of looping.

A job of a campaign that hashes its codes stores them hashed and keeps their
plain forms beside them for the job's one download (`jobs.check_download`),
each kept before its code is added, so that no code is stored without it.

At disk speed: a batch's codes are drawn at once, the first made by `new_code`
and the rest like it (`generation.alike`), with time-ordered ids; the next
batch is made while the store adds this one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import Callable

from shared.clock import Clock
from shared.domain.codekeys import PLAIN, CodeKeys, shown
from shared.domain.generation import (
    Format,
    alike,
    collection_paused,
    require_entropy,
    time_ordered_ids,
)
from shared.domain.model import Code, Job, JobState, NewId, new_code
from shared.domain.reasons import DomainError, ReasonCode
from shared.ports import Jobs

BATCH = 5_000  # codes a transaction: the store's write lock is held that long
MAX_BARREN_ROUNDS = 3
RandomBytes = Callable[[int], bytes]


async def generate(
    store: Jobs,
    job: Job,
    clock: Clock,
    new_id: NewId,
    *,
    random_bytes: RandomBytes = secrets.token_bytes,
    batch: int = BATCH,
    keys: CodeKeys = PLAIN,
) -> tuple[Job, list[str]]:
    """Store the job's missing codes; the job as finished (or failed, with why), and the
    codes this call added (in plain, as they are to be typed). The codes' ids are
    time-ordered (`generation.time_ordered_ids`), from `clock` and `random_bytes`;
    `new_id` makes none of them."""
    try:
        fmt = Format.named(job.algorithm_name, job.algorithm_details, prefix=job.prefix)
        require_entropy(fmt, job.quantity, hashed=job.hash_codes)
        job, added = await _fill(store, job, _Maker(fmt, clock, keys, random_bytes), batch)
    except DomainError as refused:
        return await _fail(store, job, refused, clock), []
    finished = dataclasses.replace(job, state=JobState.COMPLETED, updated_at=clock())
    await store.update_job(finished)
    return finished, added


async def _fill(store: Jobs, job: Job, make: _Maker, batch: int) -> tuple[Job, list[str]]:
    """Add codes until the job has its quantity: a batch is made while the one before it
    is added, and the job's progress is recorded while the next is made."""
    done = await store.count_job_codes(job.job_id)
    added: list[str] = []
    barren = 0
    adding: _Adding | None = None
    recording: asyncio.Future[None] | None = None
    try:
        while done < job.quantity or adding:
            ahead = len(adding.scans) if adding else 0
            count = min(batch, job.quantity - done - ahead)
            current, adding = adding, _start(store, job, make, count) if count > 0 else None
            if current is None:
                continue
            new = await current.new()
            barren = _barren(barren, new, job.quantity - done)
            done += len(new)
            added += new if job.quantity <= batch else []
            job = dataclasses.replace(job, done=done, updated_at=make.clock())
            if recording:
                await recording
            recording = asyncio.ensure_future(store.update_job(job))
        if recording:
            await recording
    finally:  # what was started ends before the job is failed or retried
        started = [adding.added] if adding else []
        await asyncio.gather(*started, *[recording] if recording else [], return_exceptions=True)
    return job, added


def _barren(rounds: int, new: list[str], missing: int) -> int:
    """The rounds of draws in a row that made no new code, with this one; too many stop."""
    rounds = 0 if new else rounds + 1
    if rounds >= MAX_BARREN_ROUNDS:
        raise DomainError(
            ReasonCode.INVALID_PARAMETER_VALUE,
            f"{rounds} rounds of draws made no new code: the format cannot make"
            f" {missing} more codes for this campaign",
        )
    return rounds


def _start(store: Jobs, job: Job, make: _Maker, count: int) -> _Adding:
    """`count` new codes made, and being added (their plain forms kept first if the job's
    campaign hashes codes)."""
    with collection_paused():
        codes, scans = make.codes(job, count)

    async def add() -> list[bool]:
        if job.hash_codes and job.codes_until is not None:
            kept = {code.redemption_code_id: scan for code, scan in zip(codes, scans, strict=True)}
            await store.keep_plain_codes(job.job_id, kept, job.codes_until)
        return await store.add_codes(codes)

    return _Adding(scans, asyncio.ensure_future(add()))


@dataclasses.dataclass(frozen=True)
class _Adding:
    """A batch of codes being added: each as it is to be typed, and whether each was new."""

    scans: list[str]
    added: asyncio.Future[list[bool]]

    async def new(self) -> list[str]:
        return [scan for scan, new in zip(self.scans, await self.added, strict=True) if new]


async def _fail(store: Jobs, job: Job, refused: DomainError, clock: Clock) -> Job:
    done = await store.count_job_codes(job.job_id)
    failed = dataclasses.replace(
        job, done=done, state=JobState.FAILED, error=refused.message, updated_at=clock()
    )
    await store.update_job(failed)
    return failed


@dataclasses.dataclass(frozen=True)
class _Maker:
    """Makes a job's codes."""

    fmt: Format
    clock: Clock
    keys: CodeKeys
    random_bytes: RandomBytes

    def codes(self, job: Job, count: int) -> tuple[list[Code], list[str]]:
        """`count` new codes of `job`, and each as it is to be typed. The first is made by
        `new_code`, which checks it; the others are of its format, so pass as it did."""
        scans, norms = self.fmt.generate_keyed(count, self.random_bytes)
        now = self.clock()
        ids = time_ordered_ids(count, now, self.random_bytes)
        first = new_code(
            job.code_type,
            scans[0],
            job.code_state,
            job.custom_code_info,
            now=now,
            new_id=lambda: ids[0],
            job_id=job.job_id,
            keys=self.keys,
            hashed=job.hash_codes,
        )
        hashed = job.hash_codes
        found = [self.keys.key(scan, hashed=True) for scan in scans] if hashed else norms
        shows = [shown(scan, hashed=True) for scan in scans] if hashed else scans
        codes = [
            alike(first, redemption_code_id=code_id, scan_code=show, key=key)
            for code_id, show, key in zip(ids, shows, found, strict=True)
        ]
        return codes, scans
