"""Shared (MULTI) codes in the worker's service layer, on the in-memory store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from shared.domain.model import Campaign, Change, Code, CodeRef, CodeUseType, RedemptionStatus
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from tests.fakes import FakeStore
from tests.unit.test_redeem_service import NOW, request, service


async def shared(store: FakeStore, code_type: str = "spring", **fields: Any) -> None:
    fields.setdefault("max_redemptions", 2)
    await store.create_campaign(
        Campaign(code_type, CodeUseType.MULTI, NOW, NOW, scan_code="SPRING-25", **fields)
    )


async def test_each_user_redeems_a_shared_code_once_up_to_the_maximum() -> None:
    store = FakeStore()
    await shared(store)
    svc = service(store)
    first = await svc.redeem(request("u1", "spring 25", code_type="spring"))
    again = await svc.redeem(request("u1", "SPRING-25", rid="u1-again", code_type="spring"))
    second = await svc.redeem(request("u2", "SPRING25", code_type=None))
    third = await svc.redeem(request("u3", "SPRING-25", code_type="spring"))
    assert first.status is RedemptionStatus.REDEEMED and second.status is RedemptionStatus.REDEEMED
    assert again.reason_code is ReasonCode.REDEMPTION_CODE_REDEEMED_BY_SELF
    assert third.reason_code is ReasonCode.MULTI_USE_CODE_MAX_REDEMPTIONS_REACHED
    assert store.campaigns["spring"].redemption_count == 2
    assert store.slots["spring"] == set()
    instance = await store.get_code(CodeRef("spring", "SPRING25", "u1"))
    assert instance is not None and instance.code_state is CodeState.REDEEMED
    assert ("spring", "u3") not in store.claims, "a refused user may try again later"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"is_disabled": True}, ReasonCode.REDEMPTION_CODE_TYPE_DISABLED),
        (
            {"valid_start": NOW + timedelta(hours=1)},
            ReasonCode.MULTI_USE_CODE_REDEMPTION_ATTEMPTED_BEFORE_START,
        ),
        ({"valid_end": NOW}, ReasonCode.MULTI_USE_CODE_REDEMPTION_ATTEMPTED_AFTER_END),
    ],
)
async def test_a_closed_shared_campaign_refuses_with_its_reason(
    fields: dict[str, Any], reason: ReasonCode
) -> None:
    store = FakeStore()
    await shared(store, **fields)
    outcome = await service(store).redeem(request("u1", "SPRING-25", code_type="spring"))
    assert outcome.reason_code is reason


async def test_another_code_for_a_shared_campaign_is_refused() -> None:
    store = FakeStore()
    await shared(store)
    outcome = await service(store).redeem(request("u1", "AUTUMN-25", code_type="spring"))
    assert outcome.reason_code is ReasonCode.CODE_TYPE_SCAN_CODE_MISMATCH_FOR_MULTI_USE_CODE


async def test_a_failed_shared_redemption_gives_its_slot_back() -> None:
    store = FakeStore()
    await shared(store, handler="grant-reward")
    svc = service(store)
    failed = await svc.redeem(request("u1", "SPRING-25", code_type="spring"))
    assert failed.status is RedemptionStatus.FAILED
    assert store.campaigns["spring"].redemption_count == 0
    again = await svc.redeem(request("u1", "SPRING-25", rid="u1-again", code_type="spring"))
    assert again.reason_code is ReasonCode.REDEMPTION_FAILED_MAX_RETRIES


async def test_a_redelivered_shared_job_resumes_without_a_second_slot() -> None:
    store = FakeStore()
    await shared(store)
    svc = service(store)
    pending = request("u1", "SPRING-25", code_type="spring")
    first = await svc.redeem(pending)
    store.redemptions.pop(pending.redemption_id)  # as if the outcome was never recorded
    again = await svc.redeem(pending)
    assert (first.status, again.status) == (RedemptionStatus.REDEEMED, RedemptionStatus.REDEEMED)
    assert store.campaigns["spring"].redemption_count == 1
    assert store.events() == ["code.inprogress", "code.redeemed"]


async def test_giving_up_keeps_a_redemption_that_already_succeeded() -> None:
    store = FakeStore()
    await shared(store)
    svc = service(store)
    pending = request("u1", "SPRING-25", code_type="spring")
    await svc.redeem(pending)
    store.redemptions.pop(pending.redemption_id)  # its outcome was never recorded
    store.slots["spring"].add(pending.redemption_id)  # nor its slot released
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "too many deliveries")
    outcome = await svc.give_up(pending, error)
    assert outcome.status is RedemptionStatus.REDEEMED
    assert store.campaigns["spring"].redemption_count == 1, "a redeemed slot is not given back"


async def test_giving_up_leaves_another_redemption_of_the_same_user_alone() -> None:
    store = FakeStore()
    await shared(store)
    svc = service(store)
    await svc.redeem(request("u1", "SPRING-25", code_type="spring"))
    stray = request("u1", "SPRING-25", rid="stray", code_type="spring")
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "too many deliveries")
    outcome = await svc.give_up(stray, error)
    assert outcome.status is RedemptionStatus.FAILED
    instance = await store.get_code(CodeRef("spring", "SPRING25", "u1"))
    assert instance is not None and instance.code_state is CodeState.REDEEMED
    assert store.campaigns["spring"].redemption_count == 1
    assert store.claims[("spring", "u1")] != "stray"


class SlowInstances(FakeStore):
    """The fake store, whose first new instance waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.adding = asyncio.Event()
        self.gate = asyncio.Event()

    async def add_instance(self, instance: Code, changes: Sequence[Change]) -> tuple[Code, bool]:
        if not self.adding.is_set():
            self.adding.set()
            await self.gate.wait()
        return await super().add_instance(instance, changes)


async def test_a_give_up_never_frees_the_slot_a_live_copy_of_its_job_is_about_to_use() -> None:
    store = SlowInstances()
    await shared(store, max_redemptions=1)
    svc, pending = service(store), request("u1", "SPRING-25", code_type="spring")
    copy = asyncio.create_task(svc.redeem(pending))  # holds the one slot, not its instance yet
    await store.adding.wait()
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "gave up")
    given_up = await svc.give_up(pending, error)  # another copy of the job, at its limit
    store.gate.set()
    assert ((await copy).status, given_up.status) == (RedemptionStatus.FAILED,) * 2
    instance = await store.get_code(CodeRef("spring", "SPRING25", "u1"))
    assert instance is not None and instance.code_state is CodeState.FAILED, "closed by give-up"
    assert store.campaigns["spring"].redemption_count == 0, "so its slot went back"
    other = await svc.redeem(request("u2", "SPRING-25", code_type="spring"))
    assert other.status is RedemptionStatus.REDEEMED
    assert store.campaigns["spring"].redemption_count == 1


async def test_a_give_up_before_any_claim_of_the_user_closes_nothing() -> None:
    store = FakeStore()
    await shared(store)
    svc, pending = service(store), request("u1", "SPRING-25", code_type="spring")
    error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "gave up")
    assert (await svc.give_up(pending, error)).status is RedemptionStatus.FAILED
    assert await store.get_code(CodeRef("spring", "SPRING25", "u1")) is None
    later = await svc.redeem(request("u1", "SPRING-25", rid="u1-later", code_type="spring"))
    assert later.status is RedemptionStatus.REDEEMED, "the user may still redeem it"
