"""Codes safe at rest: the key a code is found by, its masked form, and what a hashed
campaign's records and generation jobs keep (and for how long)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.worker.bootstrap import bootstrap
from shared.domain import model
from shared.domain.codekeys import PLAIN, CodeKeys, masked
from shared.domain.jobs import check_download
from shared.domain.model import Campaign, CodeUseType, Job, JobState, Redemption, new_code
from shared.domain.profiles import Session
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from tests.fakes import FakeStore
from tests.support.wait import eventually

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEYS = CodeKeys("a-secret")
CODE = "GEMS-7K2P-9QXA"
FAR = datetime(2100, 1, 1, tzinfo=UTC)  # later than any real clock: only the injected one counts


def campaign(*, hashed: bool, shared: bool = False) -> Campaign:
    use = CodeUseType.MULTI if shared else CodeUseType.SINGLE
    return Campaign("gems", use, NOW, NOW, hash_codes=hashed, scan_code="FREE" if shared else None)


def test_a_plain_campaign_keys_a_code_by_its_normalised_form_as_before() -> None:
    assert KEYS.of(campaign(hashed=False), "gems 7k2p-9qxa") == "GEMS7K2P9QXA"
    assert PLAIN.of(campaign(hashed=False), CODE) == "GEMS7K2P9QXA"


def test_a_hashed_key_is_the_same_for_every_spelling_and_reveals_nothing_of_the_code() -> None:
    key = KEYS.of(campaign(hashed=True), CODE)
    assert key == KEYS.of(campaign(hashed=True), " gems 7k2p 9qxa ")
    assert key.startswith("h1:") and len(key) == 3 + 64
    assert "GEMS" not in key and "9QXA" not in key


def test_another_secret_gives_another_key() -> None:
    hashed = campaign(hashed=True)
    assert KEYS.of(hashed, CODE) != CodeKeys("another").of(hashed, CODE)


def test_a_shared_campaigns_code_is_never_hashed() -> None:
    assert KEYS.of(campaign(hashed=True, shared=True), "free") == "FREE"


def test_a_code_typed_without_its_campaign_is_looked_up_under_both_keys() -> None:
    assert KEYS.lookups(CODE) == ("GEMS7K2P9QXA", KEYS.of(campaign(hashed=True), CODE))
    assert PLAIN.lookups(CODE) == ("GEMS7K2P9QXA",)


def test_hashing_without_a_secret_is_refused_with_its_reason() -> None:
    with pytest.raises(DomainError) as refused:
        PLAIN.of(campaign(hashed=True), CODE)
    assert refused.value.reason is ReasonCode.CODE_SECRET_MISSING


def test_what_can_be_no_code_is_refused_before_it_is_hashed() -> None:
    with pytest.raises(DomainError) as refused:
        KEYS.key("no/such", hashed=True)
    assert refused.value.reason is ReasonCode.INVALID_SCAN_CODE


def test_the_masked_form_keeps_the_last_four_characters_of_the_normalised_code() -> None:
    assert masked(CODE) == "••••9QXA"
    assert masked("ab-c") == "••••ABC"


def test_a_hashed_campaigns_new_code_keeps_only_its_key_and_masked_form() -> None:
    code = new_code(
        "gems",
        CODE,
        CodeState.AVAILABLE,
        None,
        now=NOW,
        new_id=lambda: "c1",
        keys=KEYS,
        hashed=True,
    )
    assert (code.scan_code, code.key) == ("••••9QXA", KEYS.key(CODE, hashed=True))
    assert "7K2P" not in repr(code)


def test_a_plain_campaigns_new_code_is_kept_as_given() -> None:
    code = new_code("gems", "gems-1", CodeState.INACTIVE, None, now=NOW, new_id=lambda: "c1")
    assert (code.scan_code, code.key) == ("GEMS-1", "GEMS1")


def pending(code_type: str | None = "gems") -> Redemption:
    return Redemption("r1", "q1", "alice", CODE, NOW, NOW, code_type=code_type)


def test_a_redemption_of_a_hashed_code_is_kept_masked_with_the_codes_key() -> None:
    kept = model.kept(pending(), KEYS)
    assert (kept.scan_code, kept.code_key) == ("••••9QXA", KEYS.key(CODE, hashed=True))
    assert kept.key == kept.code_key
    assert model.kept(kept, KEYS) == kept


def test_a_redemption_kept_without_a_secret_is_masked_all_the_same() -> None:
    kept = model.kept(pending(), PLAIN)
    assert (kept.scan_code, kept.code_key) == ("••••9QXA", None)


def test_a_plain_redemption_finds_its_code_by_the_normalised_form() -> None:
    assert pending().key == "GEMS7K2P9QXA"


def test_a_hashed_codes_campaign_must_be_personal() -> None:
    Campaign("gems", CodeUseType.SINGLE, NOW, NOW, hash_codes=True).check_hashing()
    with pytest.raises(DomainError) as refused:
        campaign(hashed=True, shared=True).check_hashing()
    assert refused.value.reason is ReasonCode.INVALID_PARAMETER_VALUE


def job(**fields: Any) -> Job:
    base = Job("j1", "gems", 5, CodeState.INACTIVE, "FiveByFive", {}, NOW, NOW)
    hashed = dataclasses.replace(base, hash_codes=True, codes_until=NOW + timedelta(1))
    return dataclasses.replace(hashed, **fields)


def refusal(checked: Job) -> DomainError | None:
    """What `check_download` refuses a download of `checked` with, if anything."""
    try:
        check_download(checked, NOW)
    except DomainError as refused:
        return refused
    return None


def test_a_hashed_campaigns_job_codes_are_downloadable_once_it_ended() -> None:
    assert refusal(job(state=JobState.COMPLETED)) is None
    assert refusal(job(state=JobState.FAILED)) is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"state": JobState.RUNNING}, ReasonCode.GENERATED_CODES_NOT_READY),
        ({"state": JobState.COMPLETED, "handed_out_at": NOW}, ReasonCode.GENERATED_CODES_GONE),
        ({"state": JobState.COMPLETED, "codes_until": NOW}, ReasonCode.GENERATED_CODES_GONE),
    ],
)
def test_a_hashed_campaigns_job_codes_are_refused_once_gone_or_before_they_are_made(
    fields: dict[str, Any], reason: ReasonCode
) -> None:
    with pytest.raises(DomainError) as refused:
        check_download(job(**fields), NOW)
    assert refused.value.reason is reason


def test_a_plain_campaigns_job_codes_are_downloadable_any_time() -> None:
    assert refusal(job(hash_codes=False, state=JobState.RUNNING, handed_out_at=NOW)) is None


async def test_the_worker_purges_expired_plain_codes_by_its_own_clock() -> None:
    """Without a TTL monitor (the embedded store), the worker's timer loop deletes them,
    and expired sessions with them."""
    store, at = FakeStore(), [FAR]
    worker = bootstrap(store, {}, clock=lambda: at[0], timer_scan_s=0.01)
    await store.keep_plain_codes("j1", {"c1": "PLAIN-1"}, FAR + timedelta(minutes=5))
    await store.keep_plain_codes("j2", {"c2": "PLAIN-2"}, FAR + timedelta(days=1))
    await store.open_session(Session("s1", "app", FAR + timedelta(minutes=5), profile_id="p1"))
    await store.open_session(Session("s2", "app", FAR + timedelta(days=1), profile_id="p2"))
    await worker.timers.start()
    try:
        at[0] = FAR + timedelta(minutes=5)
        kept = await eventually(
            lambda: _kept(store), until=lambda kept: kept == ({"c2"}, {"s2"}), timeout_s=30
        )
    finally:
        await worker.timers.stop()
    assert kept[0] == {"c2"}, "the expired job's codes went, the other's stayed"
    assert kept[1] == {"s2"}, "the expired session went, the other stayed"


async def _kept(store: FakeStore) -> tuple[set[str], set[str]]:
    return set(store.plain), set(store.sessions)
