"""RedeemCode in the worker's service layer, on the in-memory store."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.worker.bootstrap import bootstrap
from services.worker.redeem import RedeemService
from shared.domain import model
from shared.domain.model import (
    Campaign,
    Code,
    CodeRef,
    CodeUseType,
    Redemption,
    RedemptionStatus,
    ReplyTo,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.handlers.grant_reward import grant_reward
from shared.ports import FulfillmentHandler
from tests.fakes import FakeStore, GatedStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REWARD = {"reward": {"item": "gems", "quantity": 50}}


async def _crash(request: Mapping[str, Any]) -> Mapping[str, Any]:
    raise RuntimeError("partner down")


async def _half(request: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"success": True, "complete": False}


HANDLERS: dict[str, FulfillmentHandler] = {
    "grant-reward": grant_reward,
    "crash": _crash,
    "half": _half,
}


def service(store: FakeStore) -> RedeemService:
    counter = itertools.count()
    return bootstrap(
        store,
        HANDLERS,
        campaign_cache_ttl_s=0,
        clock=lambda: NOW,
        ids=lambda: f"id-{next(counter)}",
    ).redeem


async def campaign(store: FakeStore, code_type: str = "gems", **fields: Any) -> None:
    await store.create_campaign(Campaign(code_type, CodeUseType.SINGLE, NOW, NOW, **fields))


async def code(
    store: FakeStore,
    scan: str,
    state: CodeState = CodeState.AVAILABLE,
    code_type: str = "gems",
    info: Mapping[str, Any] | None = None,
) -> None:
    await store.add_code(
        Code(f"c-{code_type}-{scan}", code_type, scan, state, NOW, NOW, custom_code_info=info)
    )


def request(
    user: str,
    scan: str,
    rid: str | None = None,
    code_type: str | None = "gems",
    reply: ReplyTo | None = None,
) -> Redemption:
    rid = rid or f"r-{user}-{scan}-{code_type}"
    return Redemption(
        rid, rid, user, scan, NOW, NOW, code_type=code_type, replies=(reply,) if reply else ()
    )


async def test_a_campaign_without_handler_redeems_at_once_with_two_events() -> None:
    store = FakeStore()
    await campaign(store)
    await code(store, "ABC-123")
    outcome = await service(store).redeem(request("u1", "abc 123"))
    assert outcome.status is RedemptionStatus.REDEEMED
    assert outcome.code is not None and outcome.code.redeemed_by_user_id == "u1"
    assert store.events() == ["code.inprogress", "code.redeemed"]


async def test_the_example_handler_grants_the_reward() -> None:
    store = FakeStore()
    await campaign(store, handler="grant-reward")
    await code(store, "ABC", info=REWARD)
    outcome = await service(store).redeem(request("u1", "ABC"))
    assert outcome.code is not None
    assert outcome.code.custom_redemption_info == {
        "granted": {"item": "gems", "quantity": 50},
        "grantedTo": "u1",
    }


@pytest.mark.parametrize(
    ("handler", "info", "reason", "error_code"),
    [
        ("grant-reward", None, ReasonCode.REDEMPTION_FAILED, "NO_REWARD"),
        ("crash", REWARD, ReasonCode.REDEMPTION_CODE_SCRIPT_FAILURE, "HANDLER_ERROR"),
        ("half", REWARD, ReasonCode.REDEMPTION_CODE_SCRIPT_FAILURE, "BAD_RESPONSE"),
        ("missing", REWARD, ReasonCode.REDEMPTION_CODE_SCRIPT_FAILURE, "HANDLER_NOT_FOUND"),
    ],
)
async def test_a_failing_fulfillment_ends_failed_with_the_error(
    handler: str, info: Mapping[str, Any] | None, reason: ReasonCode, error_code: str
) -> None:
    store = FakeStore()
    await campaign(store, handler=handler)
    await code(store, "ABC", info=info)
    outcome = await service(store).redeem(request("u1", "ABC"))
    assert (outcome.status, outcome.reason_code) == (RedemptionStatus.FAILED, reason)
    stored = await store.get_code(CodeRef("gems", "ABC"))
    assert stored is not None and stored.code_state is CodeState.FAILED
    assert stored.error_code == error_code
    assert store.events() == ["code.inprogress", "code.failed"]
    again = await service(store).redeem(request("u1", "ABC", rid="again"))
    assert again.reason_code is ReasonCode.REDEMPTION_FAILED_MAX_RETRIES


async def test_refusals_carry_the_reference_reason_codes() -> None:
    store = FakeStore()
    await campaign(store)
    await campaign(store, "off", is_disabled=True)
    await campaign(store, "later", valid_start=NOW + timedelta(days=1))
    await code(store, "INACTIVE", CodeState.INACTIVE)
    await code(store, "GONE", CodeState.INVALIDATED)
    await code(store, "TAKEN")
    await code(store, "X", code_type="off")
    await code(store, "Y", code_type="later")
    svc = service(store)
    await svc.redeem(request("owner", "TAKEN"))

    async def reason(user: str, scan: str, code_type: str | None = "gems") -> ReasonCode | None:
        return (await svc.redeem(request(user, scan, code_type=code_type))).reason_code

    assert await reason("u", "INACTIVE") is ReasonCode.REDEMPTION_CODE_NOT_ACTIVE
    assert await reason("u", "GONE") is ReasonCode.REDEMPTION_CODE_INVALID
    assert await reason("u", "NOPE") is ReasonCode.REDEMPTION_CODE_NOT_FOUND
    assert await reason("u", "TAKEN") is ReasonCode.REDEMPTION_CODE_REDEEMED_BY_OTHER
    assert await reason("u", "TAKEN", None) is ReasonCode.REDEMPTION_CODE_REDEEMED_BY_OTHER
    assert (await svc.redeem(request("owner", "TAKEN", rid="second"))).reason_code is (
        ReasonCode.REDEMPTION_CODE_REDEEMED_BY_SELF
    )
    assert await reason("u", "X", "off") is ReasonCode.REDEMPTION_CODE_TYPE_DISABLED
    assert await reason("u", "Y", "later") is (
        ReasonCode.SINGLE_USE_CODE_REDEMPTION_ATTEMPTED_OUTSIDE_TIMEFRAME
    )
    assert await reason("u", "TAKEN", "nope") is ReasonCode.REDEMPTION_CODE_TYPE_NOT_FOUND
    assert await reason("u", "BAD$") is ReasonCode.INVALID_SCAN_CODE


async def test_a_scan_code_in_two_campaigns_needs_its_code_type() -> None:
    store = FakeStore()
    await campaign(store, "a")
    await campaign(store, "b")
    await code(store, "SAME", code_type="a")
    await code(store, "SAME", code_type="b")
    outcome = await service(store).redeem(request("u", "SAME", code_type=None))
    assert outcome.reason_code is ReasonCode.INVALID_PARAMETER_VALUE
    assert "codeType" in (outcome.message or "")


async def test_a_repeated_request_returns_the_first_outcome_and_claims_once() -> None:
    store = FakeStore()
    await campaign(store)
    await code(store, "ONCE", CodeState.INACTIVE)
    svc = service(store)
    first = await svc.redeem(request("u1", "ONCE"))
    assert first.reason_code is ReasonCode.REDEMPTION_CODE_NOT_ACTIVE
    stored = await store.get_code(CodeRef("gems", "ONCE"))
    assert stored is not None
    store.codes[("gems", "ONCE")] = stored.__class__(
        **{**stored.__dict__, "code_state": CodeState.AVAILABLE}
    )
    repeated = await svc.redeem(request("u1", "ONCE"))
    assert repeated == first
    assert store.events() == []


async def test_a_caller_asking_again_is_added_to_those_told() -> None:
    store = FakeStore()
    await campaign(store)
    await code(store, "ABC")
    svc = service(store)
    await svc.redeem(request("u1", "ABC", reply=ReplyTo("q1", "c1")))
    await svc.redeem(request("u1", "ABC", reply=ReplyTo("q2", "c2")))
    waiting = await store.pending_replies(limit=10)
    assert [r.replies for r in waiting] == [(ReplyTo("q1", "c1"), ReplyTo("q2", "c2"))]


async def test_give_up_fails_the_code_it_holds() -> None:
    store = FakeStore()
    await campaign(store, handler="grant-reward")
    await code(store, "STUCK", info=REWARD)
    pending = request("u1", "STUCK")
    await store.open_redemption(pending)
    await store.apply(
        CodeRef("gems", "STUCK"), [model.claim(pending.claim, now=NOW, new_id=lambda: "e0")]
    )
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "too many deliveries")
    outcome = await service(store).give_up(pending, error)
    assert outcome.status is RedemptionStatus.FAILED
    stored = await store.get_code(CodeRef("gems", "STUCK"))
    assert stored is not None and stored.code_state is CodeState.FAILED


async def test_a_code_a_copy_redeemed_as_another_gave_up_makes_the_redemption_redeemed() -> None:
    store = GatedStore()
    await campaign(store)  # no handler: the claim redeems at once
    await code(store, "ABC")
    worker, pending = service(store), request("u1", "ABC")
    copy = asyncio.create_task(worker.redeem(pending))  # one copy of the job ...
    await store.claiming.wait()
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "gave up")
    given_up = await worker.give_up(pending, error)  # ... the other, at its limit
    assert given_up.status is RedemptionStatus.FAILED, "it held no code yet"
    store.gate.set()
    assert (await copy).status is RedemptionStatus.REDEEMED
    stored = await store.get_redemption(pending.redemption_id)
    assert stored is not None and stored.status is RedemptionStatus.REDEEMED
    assert stored.code is not None and stored.code.code_state is CodeState.REDEEMED


async def test_a_give_up_whose_code_a_dead_copy_redeemed_is_redeemed_on_redelivery() -> None:
    store = FakeStore()
    await campaign(store)
    await code(store, "ABC")
    worker, pending = service(store), request("u1", "ABC")
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "gave up")
    assert (await worker.give_up(pending, error)).status is RedemptionStatus.FAILED
    # A copy that passed its check before the give-up claims, then dies before it finishes.
    claim = model.claim(pending.claim, now=NOW, new_id=lambda: "e1")
    done = model.succeed(pending.claim, None, now=NOW, new_id=lambda: "e2")
    assert await store.apply(CodeRef("gems", "ABC"), [claim, done]) is not None
    again = await worker.redeem(pending)
    assert (again.status, again.reason_code) == (RedemptionStatus.REDEEMED, None)


async def test_an_attempt_a_copy_carried_out_concludes_a_given_up_redemption_redeemed() -> None:
    store = FakeStore()
    await campaign(store, handler="grant-reward")
    await code(store, "ABC", info=REWARD)
    worker = bootstrap(store, HANDLERS, clock=lambda: NOW, ids=iter(map(str, range(99))).__next__)
    pending = request("u1", "ABC")
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "gave up")
    assert (await worker.redeem.give_up(pending, error)).status is RedemptionStatus.FAILED
    # A copy that passed its check before the give-up claims and is answered; a timer
    # or the answer's consumer concludes its attempt.
    ref = CodeRef("gems", "ABC")
    claim = model.claim(pending.claim, now=NOW, new_id=lambda: "e1")
    done = model.succeed(pending.claim, {"granted": 1}, now=NOW, new_id=lambda: "e2")
    redeemed = await store.apply(ref, [claim, done])
    assert redeemed is not None
    ended = await worker.outcomes.conclude(ref, redeemed)
    assert ended is not None and ended.status is RedemptionStatus.REDEEMED
    stored = await store.get_redemption(pending.redemption_id)
    assert stored is not None and (stored.status, stored.reason_code) == (
        RedemptionStatus.REDEEMED,
        None,
    )
