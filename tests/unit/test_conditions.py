"""The rules the stores share, stated once as conditions: the campaign window and
listing filter, the shared-code slot, the codes an operator may delete or reset,
and the refusals of a taken code type or scan code."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain import model
from shared.domain.conditions import (
    CountBelow,
    Differs,
    Equals,
    LowerBound,
    OneOf,
    UpperBound,
    holds,
)
from shared.domain.model import Campaign, CampaignFilter, Code, CodeUseType
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import RESETTABLE, CodeState

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TICK = timedelta(milliseconds=1)


@dataclasses.dataclass
class Record:
    name: str | None = "a"
    start: datetime | None = None
    count: int = 0
    limit: int | None = None


def test_equals_and_differs_treat_none_as_a_value() -> None:
    assert holds([Equals("name", "a")], Record())
    assert not holds([Equals("name", "a")], Record(name=None))
    assert holds([Equals("name", None)], Record(name=None))
    assert holds([Differs("name", "b")], Record(name=None))
    assert not holds([Differs("name", "a")], Record())


def test_one_of_holds_for_its_values_only() -> None:
    assert holds([OneOf("name", ("a", "b"))], Record())
    assert not holds([OneOf("name", ("b",))], Record())
    assert not holds([OneOf("name", ())], Record())


def test_a_lower_bound_is_inclusive_and_open_when_unset() -> None:
    bound = LowerBound("start", NOW)
    assert bound.holds(Record(start=NOW))
    assert bound.holds(Record(start=NOW - TICK))
    assert not bound.holds(Record(start=NOW + TICK))
    assert bound.holds(Record(start=None))


def test_an_upper_bound_is_exclusive_and_open_when_unset() -> None:
    bound = UpperBound("start", NOW)
    assert not bound.holds(Record(start=NOW))
    assert bound.holds(Record(start=NOW + TICK))
    assert not bound.holds(Record(start=NOW - TICK))
    assert bound.holds(Record(start=None))


def test_a_count_below_its_limit_and_none_set() -> None:
    below = CountBelow("count", "limit")
    assert below.holds(Record(count=2, limit=3))
    assert not below.holds(Record(count=3, limit=3))
    assert not below.holds(Record(count=0, limit=0))
    assert below.holds(Record(count=10**6, limit=None))


def test_no_conditions_hold_for_anything_and_all_must_hold() -> None:
    assert holds([], Record())
    assert not holds([Equals("name", "a"), Equals("count", 1)], Record())


def campaign(**fields: Any) -> Campaign:
    return Campaign("promo", CodeUseType.MULTI, NOW, NOW, scan_code="P", **fields)


@pytest.mark.parametrize(
    ("window", "inside"),
    [
        ({}, True),
        ({"valid_start": NOW}, True),
        ({"valid_start": NOW + TICK}, False),
        ({"valid_end": NOW}, False),
        ({"valid_end": NOW + TICK}, True),
        ({"valid_start": NOW, "valid_end": NOW + TICK}, True),
    ],
)
def test_the_window_takes_its_start_and_leaves_its_end(
    window: dict[str, Any], inside: bool
) -> None:
    c = campaign(**window)
    assert holds(model.in_window(NOW), c) is inside
    assert CampaignFilter(valid_at=NOW).matches(c) is inside
    assert holds(model.slot_open(NOW), c) is inside


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({"valid_start": NOW + TICK}, ReasonCode.MULTI_USE_CODE_REDEMPTION_ATTEMPTED_BEFORE_START),
        ({"valid_end": NOW}, ReasonCode.MULTI_USE_CODE_REDEMPTION_ATTEMPTED_AFTER_END),
    ],
)
def test_a_redemption_outside_the_window_is_refused(
    window: dict[str, Any], reason: ReasonCode
) -> None:
    with pytest.raises(DomainError) as refused:
        campaign(**window).check_redeemable(NOW)
    assert refused.value.reason is reason
    single = dataclasses.replace(campaign(**window), code_use_type=CodeUseType.SINGLE)
    with pytest.raises(DomainError) as refused:
        single.check_redeemable(NOW)
    assert refused.value.reason is ReasonCode.SINGLE_USE_CODE_REDEMPTION_ATTEMPTED_OUTSIDE_TIMEFRAME


def test_a_redemption_at_the_start_or_just_before_the_end_is_allowed() -> None:
    open_now = campaign(valid_start=NOW, valid_end=NOW + TICK)
    open_now.check_redeemable(NOW)  # raises if refused
    assert holds(model.in_window(NOW), open_now)
    assert not holds(model.in_window(NOW + TICK), open_now)


@pytest.mark.parametrize(
    ("fields", "gives"),
    [
        ({"max_redemptions": None, "redemption_count": 500}, True),
        ({"max_redemptions": 3, "redemption_count": 2}, True),
        ({"max_redemptions": 3, "redemption_count": 3}, False),
        ({"max_redemptions": 0}, False),
        ({"is_disabled": True}, False),
    ],
)
def test_a_slot_opens_while_enabled_and_below_the_limit(
    fields: dict[str, Any], gives: bool
) -> None:
    assert holds(model.slot_open(NOW), campaign(**fields)) is gives


@pytest.mark.parametrize(
    ("where", "listed"),
    [
        (CampaignFilter(), True),
        (CampaignFilter(code_use_type=CodeUseType.MULTI), True),
        (CampaignFilter(code_use_type=CodeUseType.SINGLE), False),
        (CampaignFilter(is_disabled=False), True),
        (CampaignFilter(is_disabled=True), False),
        (CampaignFilter(valid_at=NOW - TICK), False),
        (CampaignFilter(code_use_type=CodeUseType.MULTI, is_disabled=False, valid_at=NOW), True),
    ],
)
def test_a_filter_matches_on_each_field_it_sets(where: CampaignFilter, listed: bool) -> None:
    c = campaign(valid_start=NOW)
    assert where.matches(c) is listed
    assert holds(where.conditions(), c) is listed


def test_an_empty_filter_states_no_condition() -> None:
    assert CampaignFilter().conditions() == ()


def code(state: CodeState, timer_at: datetime | None = None) -> Code:
    return Code("id", "gems", "A1", state, NOW, NOW, timer_at=timer_at)


@pytest.mark.parametrize("state", list(CodeState))
def test_operators_delete_and_reset_only_codes_no_redemption_holds(state: CodeState) -> None:
    idle, timed = code(state), code(state, timer_at=NOW)
    assert holds(model.deletable(), idle) is (state is not CodeState.IN_PROGRESS)
    assert holds(model.resettable(), idle) is (state in RESETTABLE)
    assert not holds(model.deletable(), timed)
    assert not holds(model.resettable(), timed)


@pytest.mark.parametrize("state", sorted(RESETTABLE))
def test_a_reset_from_a_state_is_the_reset_of_a_code_in_it(state: CodeState) -> None:
    to = CodeState.AVAILABLE
    assert model.reset_from(state, to, now=NOW, event_id="r1", by="op") == model.reset(
        code(state), to, now=NOW, event_id="r1", by="op"
    )


def test_taken_code_types_and_scan_codes_are_refused_with_their_reasons() -> None:
    assert model.code_type_taken("gems").reason is ReasonCode.CODE_TYPE_EXISTS
    assert "gems" in model.code_type_taken("gems").message
    taken = model.shared_scan_code_taken("SPRING-25")
    assert (taken.reason, "SPRING-25" in taken.message) == (ReasonCode.SCAN_CODE_EXISTS, True)
    taken = model.scan_code_taken("gems", "ABC-1")
    assert taken.reason is ReasonCode.SCAN_CODE_EXISTS
    assert "gems" in taken.message and "ABC-1" in taken.message
