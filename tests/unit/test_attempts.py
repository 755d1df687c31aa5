"""Fulfillment attempts over time: polls, deadlines, retries with backoff, async responses.

On the in-memory store, with a clock the test moves: every timer is fired by
the same `TimerLoop.fire` a worker runs, taken with `Store.take_due`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.worker.bootstrap import Worker, bootstrap
from shared.domain.access import UNLIMITED, Grant
from shared.domain.backoff import RetryPolicy, compute_backoff
from shared.domain.fulfillment import AsyncResponse
from shared.domain.model import (
    AttemptState,
    Campaign,
    Code,
    CodeRef,
    CodeUseType,
    Redemption,
    RedemptionStatus,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.runtime import failpoints
from tests.fakes import FakeStore, GatedStore

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REF = CodeRef("parcel", "ABC")
LEASE_S = 10.0


@dataclass
class Partner:
    """A scripted handler: answers in order, then repeats the last; records each call."""

    answers: list[Mapping[str, Any]]
    calls: list[Mapping[str, Any]] = field(default_factory=list)

    async def __call__(self, request: Mapping[str, Any]) -> Mapping[str, Any]:
        self.calls.append(dict(request))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


WAIT = {"success": True, "complete": False}
DONE = {"success": True, "complete": True, "customRedemptionInfo": {"tracking": "T1"}}
FAIL = {"success": False, "complete": True, "errorCode": "OUT_OF_STOCK", "errorMsg": "none left"}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def move_to(self, instant: datetime) -> None:
        self.now = instant


@dataclass
class Rig:
    store: FakeStore
    clock: Clock
    partner: Partner
    worker: Worker

    async def redeem(self, user: str = "u1", rid: str = "r1") -> Redemption:
        pending = Redemption(rid, rid, user, "abc", START, START, code_type="parcel")
        return await self.worker.redeem.redeem(pending)

    async def code(self) -> Code:
        code = await self.store.get_code(REF)
        assert code is not None
        return code

    async def fire_due(self) -> int:
        """Fire every timer due now, as a worker's loop would; how many fired."""
        due = await self.store.take_due(self.clock(), LEASE_S, limit=100)
        for item in due:
            await self.worker.timers.fire(item.ref, item.code)
        return len(due)

    async def redemption(self, rid: str = "r1") -> Redemption:
        found = await self.store.get_redemption(rid)
        assert found is not None
        return found


async def rig(
    answers: list[Mapping[str, Any]], store: FakeStore | None = None, **settings: Any
) -> Rig:
    store, clock, partner = store or FakeStore(), Clock(), Partner(answers)
    fields: dict[str, Any] = {"handler": "partner", "timeout_s": 60.0} | settings
    await store.create_campaign(Campaign("parcel", CodeUseType.SINGLE, START, START, **fields))
    await store.add_code(Code("c1", "parcel", "ABC", CodeState.AVAILABLE, START, START))
    return Rig(store, clock, partner, worker_for(store, clock, partner, unit=0.5))


def worker_for(store: FakeStore, clock: Clock, partner: Partner, *, unit: float) -> Worker:
    """A worker on `store` and `clock` whose one handler is `partner`; its jitter is `unit`."""
    counter = itertools.count()
    return bootstrap(
        store,
        {"partner": partner},
        campaign_cache_ttl_s=0,
        lease_s=LEASE_S,
        clock=clock,
        ids=lambda: f"e{next(counter)}",
        unit=lambda: unit,
    )


@contextlib.contextmanager
def crashing_at(spec: str) -> Iterator[None]:
    """Failpoints armed by `spec` for the block, which must end in one of them."""
    failpoints.configure(spec)
    try:
        with pytest.raises(failpoints.FailpointError):
            yield
    finally:
        failpoints.configure("")


def after(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_backoff_grows_by_the_multiplier_up_to_the_cap_plus_jitter() -> None:
    policy = RetryPolicy(initial=2, max=10, multiplier=3, jitter=1)
    assert [compute_backoff(policy, n, 0.0) for n in range(4)] == [2, 6, 10, 10]
    assert compute_backoff(policy, 0, 0.5) == 2.5
    assert compute_backoff(RetryPolicy(), 0, 0.99) == 1.0


async def test_an_async_handler_is_polled_until_complete() -> None:
    r = await rig([WAIT, WAIT, DONE], is_async=True, poll_interval_s=5.0)
    first = await r.redeem()
    assert first.status is RedemptionStatus.IN_PROGRESS
    code = await r.code()
    assert (code.code_state, code.attempt_state) == (CodeState.IN_PROGRESS, AttemptState.WAITING)
    assert code.timer_at == after(5)
    r.clock.move_to(after(4.9))
    assert await r.fire_due() == 0
    r.clock.move_to(after(5))
    assert await r.fire_due() == 1
    r.clock.move_to(after(10))
    await r.fire_due()
    assert [c["operation"] for c in r.partner.calls] == ["redeem", "async", "async"]
    assert {c["attempt"] for c in r.partner.calls} == {0}
    code = await r.code()
    assert code.code_state is CodeState.REDEEMED
    assert code.custom_redemption_info == {"tracking": "T1"}
    ended = await r.redemption()
    assert ended.status is RedemptionStatus.REDEEMED
    assert (await r.code()).timer_at is None  # concluded: nothing left to look at
    assert r.store.events() == ["code.inprogress", "code.redeemed"]


async def test_a_failed_attempt_is_retried_after_its_backoff_then_ends_failed() -> None:
    backoff = RetryPolicy(initial=2, max=60, multiplier=2)
    r = await rig([FAIL], max_retries=2, retry_backoff=backoff)
    assert (await r.redeem()).status is RedemptionStatus.IN_PROGRESS
    code = await r.code()
    assert (code.code_state, code.retry_at) == (CodeState.FAILED, after(2))
    r.clock.move_to(after(2))
    await r.fire_due()
    code = await r.code()
    assert (code.code_state, code.attempt, code.retry_at) == (CodeState.FAILED, 1, after(6))
    r.clock.move_to(after(6))
    await r.fire_due()
    code = await r.code()
    assert (code.code_state, code.attempt, code.retry_at) == (CodeState.FAILED, 2, None)
    assert [c["attempt"] for c in r.partner.calls] == [0, 1, 2]
    ended = await r.redemption()
    assert (ended.status, ended.reason_code) == (
        RedemptionStatus.FAILED,
        ReasonCode.REDEMPTION_FAILED,
    )
    assert r.store.events() == ["code.inprogress", "code.failed"] * 3
    later = await r.redeem(rid="r2")
    assert later.reason_code is ReasonCode.REDEMPTION_FAILED_MAX_RETRIES
    someone_else = await r.redeem(user="u2", rid="r3")
    assert someone_else.reason_code is ReasonCode.REDEMPTION_CODE_REDEEMED_BY_OTHER


async def test_a_retry_that_succeeds_redeems_the_code() -> None:
    r = await rig([FAIL, DONE], max_retries=1)
    await r.redeem()
    r.clock.move_to(after(1))
    await r.fire_due()
    assert (await r.code()).code_state is CodeState.REDEEMED
    assert (await r.redemption()).status is RedemptionStatus.REDEEMED


async def test_an_attempt_past_its_deadline_times_out() -> None:
    r = await rig([WAIT], is_async=True, poll_interval_s=20.0, timeout_s=30.0)
    await r.redeem()
    r.clock.move_to(after(20))
    await r.fire_due()  # a poll: still waiting; the next look is at the deadline
    assert (await r.code()).timer_at == after(30)
    r.clock.move_to(after(30))
    await r.fire_due()
    code = await r.code()
    assert (code.code_state, code.attempt_state) == (CodeState.FAILED, AttemptState.TIMED_OUT)
    assert code.error_code == "ASYNC_PROCESSING_TIMEOUT"
    ended = await r.redemption()
    assert ended.status is RedemptionStatus.FAILED


async def test_a_redelivered_job_leaves_the_claimed_attempt_to_its_timer() -> None:
    r = await rig([WAIT], is_async=True)
    await r.redeem()
    await r.redeem()  # the same job again: no second "redeem" call
    assert [c["operation"] for c in r.partner.calls] == ["redeem"]


async def test_a_crashed_first_call_is_taken_over_by_the_timer() -> None:
    r = await rig([DONE], is_async=True)
    pending = Redemption("r1", "r1", "u1", "abc", START, START, code_type="parcel")
    await r.store.open_redemption(pending)
    from shared.domain import attempts, model

    campaign = await r.store.get_campaign("parcel")
    assert campaign is not None
    started = attempts.started(campaign, START, LEASE_S)
    claim = model.claim(pending.claim, now=START, new_id=lambda: "e0", attempt_fields=started)
    await r.store.apply(REF, [claim])  # the worker that made this claim died
    r.clock.move_to(after(LEASE_S))
    await r.fire_due()
    assert [c["operation"] for c in r.partner.calls] == ["redeem"]
    assert (await r.redemption()).status is RedemptionStatus.REDEEMED


def answer(attempt: int = 0, response: object = DONE, **ids: str) -> AsyncResponse:
    """An answer naming the code (`redemptionCodeId` c1) unless `ids` say otherwise."""
    return AsyncResponse("r1", attempt, response, **({"redemption_code_id": "c1"} | ids))


async def test_an_async_response_completes_the_current_attempt() -> None:
    r = await rig([WAIT], is_async=True)
    await r.redeem()
    code = await r.worker.outcomes.respond(answer(scan_code="a-b-c", code_type="parcel"), UNLIMITED)
    assert code.code_state is CodeState.REDEEMED
    assert code.response is not None and code.response["success"] is True
    assert (await r.redemption()).status is RedemptionStatus.REDEEMED


async def test_an_async_failure_response_starts_the_retry() -> None:
    r = await rig([WAIT], is_async=True, max_retries=1)
    await r.redeem()
    code = await r.worker.outcomes.respond(answer(response=FAIL), UNLIMITED)
    assert (code.code_state, code.retry_at) == (CodeState.FAILED, after(1))
    assert (await r.redemption()).status is RedemptionStatus.IN_PROGRESS


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (answer(redemption_code_id=""), ReasonCode.REDEMPTION_CODE_ATTEMPT_ERROR),
        (AsyncResponse("nope", 0, DONE), ReasonCode.REDEMPTION_CODE_ATTEMPT_ERROR),
        (
            AsyncResponse("nope", 0, DONE, redemption_code_id="c1"),
            ReasonCode.REDEMPTION_CODE_BY_ID_NOT_FOUND,
        ),
        (answer(attempt=1), ReasonCode.REDEMPTION_CODE_ATTEMPT_MISMATCH),
        (answer(scan_code="OTHER"), ReasonCode.REDEMPTION_CODE_ATTEMPT_ERROR),
        (answer(redemption_code_id="c2"), ReasonCode.REDEMPTION_CODE_ATTEMPT_ERROR),
        (answer(response={"complete": True}), ReasonCode.REDEMPTION_CODE_ASYNC_BAD_RESPONSE),
        (answer(response=[1, 2]), ReasonCode.REDEMPTION_CODE_ASYNC_BAD_RESPONSE),
    ],
)
async def test_async_responses_are_checked_against_the_attempt(
    reply: AsyncResponse, reason: ReasonCode
) -> None:
    r = await rig([WAIT], is_async=True)
    await r.redeem()
    before = await r.code()
    with pytest.raises(DomainError) as refused:
        await r.worker.outcomes.respond(reply, UNLIMITED)
    assert refused.value.reason is reason
    assert await r.code() == before


@pytest.mark.parametrize(
    "grant",
    [
        Grant(frozenset({"fulfillment"}), handlers=frozenset({"someone-else"})),
        Grant(frozenset({"fulfillment"}), campaigns=frozenset({"gems"})),
        Grant(frozenset({"admin"}), campaigns=frozenset({"gems"}), handlers=frozenset({"partner"})),
    ],
)
async def test_a_key_answers_only_attempts_of_its_handlers_and_campaigns(grant: Grant) -> None:
    r = await rig([WAIT], is_async=True)
    await r.redeem()
    before = await r.code()
    with pytest.raises(DomainError) as refused:
        await r.worker.outcomes.respond(answer(), grant)
    assert refused.value.reason is ReasonCode.FORBIDDEN
    assert await r.code() == before
    own = Grant(
        frozenset({"fulfillment"}), campaigns=frozenset({"parcel"}), handlers=frozenset({"partner"})
    )
    assert (await r.worker.outcomes.respond(answer(), own)).code_state is CodeState.REDEEMED


async def test_a_response_after_the_deadline_gets_40768_and_changes_nothing() -> None:
    r = await rig([WAIT], is_async=True, timeout_s=30.0)
    await r.redeem()
    before = await r.code()
    r.clock.move_to(after(30))
    with pytest.raises(DomainError) as refused:
        await r.worker.outcomes.respond(answer(), UNLIMITED)
    assert refused.value.reason is ReasonCode.REDEMPTION_CODE_ASYNC_PROCESSING_TIMEOUT
    assert await r.code() == before


async def test_a_response_for_an_ended_attempt_gets_40758_unless_it_repeats_the_last() -> None:
    r = await rig([WAIT], is_async=True)
    await r.redeem()
    await r.worker.outcomes.respond(answer(), UNLIMITED)
    ended = await r.code()
    again = await r.worker.outcomes.respond(answer(), UNLIMITED)  # a redelivered response
    assert (again.code_state, again.version) == (CodeState.REDEEMED, ended.version)
    with pytest.raises(DomainError) as refused:
        await r.worker.outcomes.respond(answer(response=FAIL), UNLIMITED)
    assert refused.value.reason is ReasonCode.REDEMPTION_CODE_NOT_IN_PROGRESS
    assert await r.code() == ended


async def test_a_response_for_a_synchronous_campaign_gets_40767() -> None:
    r = await rig([FAIL], max_retries=1)
    await r.redeem()
    with pytest.raises(DomainError) as refused:
        await r.worker.outcomes.respond(answer(), UNLIMITED)
    assert refused.value.reason is ReasonCode.REDEMPTION_CODE_TYPE_NOT_ASYNC


async def test_a_code_invalidated_while_its_retry_waits_ends_the_redemption() -> None:
    r = await rig([FAIL], max_retries=3)
    await r.redeem()
    from shared.domain import model

    code = await r.code()
    change = model.invalidate(code, "fraud", now=START, new_id=lambda: "x", by="ops")
    await r.store.apply(REF, [change])
    r.clock.move_to(after(1))
    await r.fire_due()
    ended = await r.redemption()
    assert (ended.status, ended.reason_code) == (
        RedemptionStatus.FAILED,
        ReasonCode.REDEMPTION_CODE_INVALID,
    )
    assert len(r.partner.calls) == 1


async def test_a_shared_code_retries_per_user_and_gives_its_slot_back_when_it_fails() -> None:
    store, clock, partner = FakeStore(), Clock(), Partner([FAIL])
    campaign = Campaign(
        "promo",
        CodeUseType.MULTI,
        START,
        START,
        scan_code="SPRING",
        max_redemptions=1,
        handler="partner",
        max_retries=1,
    )
    await store.create_campaign(campaign)
    worker = worker_for(store, clock, partner, unit=0.0)

    def pending(user: str) -> Redemption:
        return Redemption(f"r-{user}", f"r-{user}", user, "spring", START, START)

    first = await worker.redeem.redeem(pending("u1"))
    assert first.status is RedemptionStatus.IN_PROGRESS
    mine = CodeRef("promo", "SPRING", "u1")
    instance = await store.get_code(mine)
    assert instance is not None and instance.retry_at == after(1)
    blocked = await worker.redeem.redeem(pending("u2"))
    assert blocked.reason_code is ReasonCode.MULTI_USE_CODE_MAX_REDEMPTIONS_REACHED

    clock.move_to(after(1))
    for due in await store.take_due(clock(), LEASE_S, limit=10):
        await worker.timers.fire(due.ref, due.code)

    instance = await store.get_code(mine)
    assert instance is not None and (instance.code_state, instance.attempt) == (CodeState.FAILED, 1)
    assert [c["attempt"] for c in partner.calls] == [0, 1]
    ended = await store.get_redemption("r-u1")
    assert ended is not None and ended.status is RedemptionStatus.FAILED
    again = await worker.redeem.redeem(Redemption("r2", "r2", "u1", "spring", START, START))
    assert again.reason_code is ReasonCode.REDEMPTION_FAILED_MAX_RETRIES
    partner.answers = [DONE]
    retried = Redemption("r3", "r3", "u2", "spring", START, START)
    other = await worker.redeem.redeem(retried)  # the failed user's slot came back
    assert other.status is RedemptionStatus.REDEEMED


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"handler": "h", "handler_transport": "webhook"}, "webhookUrl is required"),
        ({"handler": "h", "webhook_url": "https://x"}, "webhookUrl is required"),
        ({"is_async": True}, "need a handler"),
        ({"max_retries": 2}, "need a handler"),
        ({"handler": "h", "poll_interval_s": 5.0}, "async handlers only"),
        ({"handler": "h", "handler_transport": "pigeon"}, "handlerTransport must be"),
        (
            {"handler": "h", "retry_backoff": RetryPolicy(initial=10, max=5)},
            "at least retryBackoff.initial",
        ),
    ],
)
def test_fulfillment_settings_that_cannot_work_together_are_refused(
    fields: dict[str, Any], problem: str
) -> None:
    campaign = Campaign("c", CodeUseType.SINGLE, START, START, **fields)
    with pytest.raises(DomainError) as refused:
        campaign.check_fulfillment()
    assert refused.value.reason is ReasonCode.INVALID_PARAMETER_VALUE
    assert problem in refused.value.message


async def test_an_attempt_ended_within_its_job_is_concluded_and_leaves_no_timer() -> None:
    r = await rig([DONE])
    assert (await r.redeem()).status is RedemptionStatus.REDEEMED
    assert (await r.code()).timer_at is None
    r.clock.move_to(after(3600))
    assert await r.fire_due() == 0


@pytest.mark.parametrize(
    "closing", [{"is_disabled": True}, {"valid_end": after(1)}], ids=["disabled", "ended"]
)
async def test_a_redelivered_job_resumes_the_code_it_holds_though_the_campaign_closed(
    closing: dict[str, Any],
) -> None:
    r = await rig([WAIT], is_async=True, poll_interval_s=5.0)
    assert (await r.redeem()).status is RedemptionStatus.IN_PROGRESS
    await r.store.update_campaign("parcel", 1, closing, START)
    r.clock.move_to(after(2))
    again = await r.redeem()  # the same job, delivered again
    assert (again.status, again.reason_code) == (RedemptionStatus.IN_PROGRESS, None)
    code = await r.code()
    assert (code.code_state, code.redemption_id) == (CodeState.IN_PROGRESS, "r1")


async def test_a_retry_cancelled_by_give_up_never_starts() -> None:
    r = await rig([FAIL, DONE], max_retries=1)
    await r.redeem()
    code = await r.code()
    assert code.retry_at is not None
    r.clock.move_to(code.retry_at)
    [due] = await r.store.take_due(r.clock(), LEASE_S, limit=10)
    pending = Redemption("r1", "r1", "u1", "abc", START, START, code_type="parcel")
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "gave up")
    given_up = await r.worker.redeem.give_up(pending, error)
    assert given_up.status is RedemptionStatus.FAILED
    await r.worker.timers.fire(due.ref, due.code)  # the retry, taken before the give-up
    code = await r.code()
    assert (code.code_state, code.attempt) == (CodeState.FAILED, 0)
    assert len(r.partner.calls) == 1
    assert (await r.redemption()).status is RedemptionStatus.FAILED


async def test_a_claim_whose_worker_died_before_the_call_is_called_on_redelivery() -> None:
    r = await rig([DONE])
    with crashing_at("after-claim=raise"):
        await r.redeem()
    assert (await r.code()).attempt_state is AttemptState.STARTING
    assert (await r.redeem()).status is RedemptionStatus.REDEEMED
    assert [(c["operation"], c["attempt"]) for c in r.partner.calls] == [("redeem", 0)]


async def test_a_claim_whose_worker_died_before_the_call_is_called_by_its_timer() -> None:
    r = await rig([DONE], timeout_s=30.0)
    with crashing_at("after-claim=raise"):
        await r.redeem()
    assert (await r.code()).timer_at == after(LEASE_S)
    r.clock.move_to(after(LEASE_S))
    assert await r.fire_due() == 1
    assert (await r.code()).code_state is CodeState.REDEEMED
    assert (await r.redemption()).status is RedemptionStatus.REDEEMED
    assert len(r.partner.calls) == 1


async def test_an_attempt_called_before_a_crash_is_never_called_again() -> None:
    r = await rig([DONE])
    with crashing_at("after-fulfillment-call=raise"):
        await r.redeem()
    assert (await r.redeem()).status is RedemptionStatus.IN_PROGRESS  # redelivered
    r.clock.move_to(after(LEASE_S))
    await r.fire_due()
    assert len(r.partner.calls) == 1, "the call's outcome is unknown: its deadline decides"
    r.clock.move_to(after(60))
    await r.fire_due()
    assert len(r.partner.calls) == 1
    assert (await r.code()).attempt_state is AttemptState.TIMED_OUT


async def test_a_handler_answer_no_store_could_hold_fails_the_attempt_cleanly() -> None:
    huge = {"success": True, "complete": True, "customRedemptionInfo": {"n": 2**70}}
    r = await rig([huge])
    ended = await r.redeem()
    assert ended.status is RedemptionStatus.FAILED
    code = await r.code()
    assert (code.code_state, code.error_code) == (CodeState.FAILED, "BAD_RESPONSE")
    assert code.error_msg is not None and "integer" in code.error_msg


async def test_a_copy_of_a_job_given_up_meanwhile_calls_nothing() -> None:
    gated = GatedStore()
    r = await rig([DONE], store=gated)
    pending = Redemption("r1", "r1", "u1", "abc", START, START, code_type="parcel")
    copy = asyncio.create_task(r.worker.redeem.redeem(pending))  # one copy of the job ...
    await gated.claiming.wait()
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "gave up")
    given_up = await r.worker.redeem.give_up(pending, error)  # ... the other, at its limit
    assert given_up.status is RedemptionStatus.FAILED
    gated.gate.set()
    assert (await copy).status is RedemptionStatus.FAILED
    assert r.partner.calls == []
    code = await r.code()
    assert (code.code_state, code.redemption_id) == (CodeState.FAILED, "r1")
