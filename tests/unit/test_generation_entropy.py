"""Generation refuses what a format cannot do: too little randomness for the campaign it
would fill (log2 of its codes + 40 bits), and draws that stop finding new codes; it never
loops hunting for unused codes."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
import pytest

from shared.clock import new_id
from shared.domain.codekeys import CodeKeys
from shared.domain.generation import SPARE_BITS, UNAMBIGUOUS, Format, require_entropy
from shared.domain.model import Campaign, Code, CodeUseType, Job, JobState
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.runtime.settings import Settings
from shared.service import generate_codes
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ADMIN = {"Authorization": "Bearer admin-key"}
SETTINGS = Settings(api_keys="admin-key=admin", context_secret="secret")
EIGHT = "ABCDEFGH"  # three bits a character


# The rule (pure).


def test_a_codes_randomness_is_its_random_characters_bits_not_its_check() -> None:
    assert Format(EIGHT, (14,)).random_bits == 42
    assert Format(EIGHT, (15,), include_check=True).random_bits == 42
    five_by_five = Format.named("FiveByFive", {"includeCheck": True})
    assert five_by_five.random_bits == pytest.approx(24 * math.log2(31))


def test_a_format_needs_40_bits_beyond_log2_of_the_campaigns_codes() -> None:
    fmt = Format(EIGHT, (14,))  # 42 bits: 2 to spare beyond 40, enough for 4 codes
    require_entropy(fmt, 4)
    with pytest.raises(DomainError) as refused:
        require_entropy(fmt, 5)
    assert refused.value.reason is ReasonCode.INVALID_PARAMETER_VALUE
    assert "42.0 bits" in refused.value.message
    assert "at least 42.4" in refused.value.message and "5 codes" in refused.value.message


@pytest.mark.parametrize(
    ("fmt", "inventory"),
    [
        (Format.named("FiveByFive", {"includeCheck": True}), 10_000_000_000),
        (Format.named("StructuredGuid", {}), 10_000_000_000),
        (Format.named("Custom", {}), 1_000),  # 12 of 31 symbols: 59.4 bits
    ],
)
def test_the_named_formats_have_room_for_large_campaigns(fmt: Format, inventory: int) -> None:
    assert fmt.random_bits >= math.log2(inventory) + SPARE_BITS
    require_entropy(fmt, inventory)  # and the rule agrees: no refusal


def test_even_one_code_needs_40_bits() -> None:
    with pytest.raises(DomainError, match=f"at least {SPARE_BITS}.0"):
        require_entropy(Format("AB", (4,)), 1)


def test_a_hashed_campaigns_codes_count_only_what_their_masked_form_hides() -> None:
    # The masked form shows the last four characters: 14 - 4 = 10 hidden, 30 bits.
    assert Format(EIGHT, (14,)).secret_bits(hashed=True) == 30
    # A check character is among the four shown, not counted twice: 15 - 4 = 11, 33 bits.
    assert Format(EIGHT, (15,), include_check=True).secret_bits(hashed=True) == 33
    assert Format(EIGHT, (18,)).secret_bits(hashed=False) == Format(EIGHT, (18,)).random_bits


def test_a_format_for_a_hashed_campaign_needs_40_bits_beyond_what_is_shown() -> None:
    fmt = Format(EIGHT, (18,), prefix="VAULT")  # 54 bits, 42 of them hidden when masked
    require_entropy(fmt, 5)  # 54 bits >= log2(5) + 40 in plain
    require_entropy(fmt, 4, hashed=True)  # 42 hidden: enough for 4 codes
    with pytest.raises(DomainError) as refused:
        require_entropy(fmt, 5, hashed=True)
    assert refused.value.reason is ReasonCode.INVALID_PARAMETER_VALUE
    message = refused.value.message
    assert "42.0 bits" in message and "last four characters" in message
    assert "at least 42.4" in message and "5 codes" in message
    checked = Format(EIGHT, (19,), include_check=True)  # 18 random, 15 hidden: 45 bits
    require_entropy(checked, 32, hashed=True)
    with pytest.raises(DomainError, match=r"45\.0 bits"):
        require_entropy(checked, 33, hashed=True)


# The service: jobs, however they are run.


def job_of(quantity: int, details: dict[str, object], name: str = "Custom") -> Job:
    return Job("job-1", "gems", quantity, CodeState.INACTIVE, name, details, NOW, NOW)


async def store_with(job: Job) -> FakeStore:
    store = FakeStore()
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    await store.create_job(job)
    return store


@pytest.mark.timeout(10)
async def test_a_job_whose_format_is_too_small_fails_with_why_and_stores_nothing() -> None:
    job = job_of(100, {"alphabet": "AB", "length": 4})  # 16 codes at most
    store = await store_with(job)
    finished, added = await generate_codes.generate(store, job, lambda: NOW, new_id)
    assert (finished.state, finished.done, added) == (JobState.FAILED, 0, [])
    assert finished.error is not None and "4.0 bits of randomness" in finished.error
    assert await store.get_job("job-1") == finished
    assert sum((await store.inventory("gems", shared=False)).values()) == 0


@pytest.mark.timeout(10)
async def test_a_hashed_campaigns_job_counts_only_the_characters_a_masked_code_hides() -> None:
    """The default custom format (12 of 31 symbols, 59.4 bits) shows 4 of its 12 characters
    masked: 39.6 hidden bits are too few for even one code of a hashed campaign."""
    plain = job_of(1, {})
    hashed = dataclasses.replace(plain, job_id="job-2", hash_codes=True, codes_until=NOW)
    store = await store_with(plain)
    await store.create_job(hashed)
    keys = CodeKeys("a-secret")
    made, _ = await generate_codes.generate(store, plain, lambda: NOW, new_id, keys=keys)
    refused, added = await generate_codes.generate(store, hashed, lambda: NOW, new_id, keys=keys)
    assert made.state is JobState.COMPLETED
    assert (refused.state, added) == (JobState.FAILED, [])
    assert refused.error is not None and "39.6 bits" in refused.error


class FullStore(FakeStore):
    """A store where every code drawn is already taken."""

    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        return [False] * len(codes)


@pytest.mark.timeout(10)
async def test_draws_that_keep_finding_no_new_code_end_the_job_instead_of_looping() -> None:
    job = job_of(10, {"includeCheck": True}, "FiveByFive")
    store = FullStore()
    await store.create_job(job)
    finished, _ = await generate_codes.generate(
        store, job, lambda: NOW, new_id, random_bytes=random.Random(1).randbytes
    )
    assert finished.state is JobState.FAILED
    assert finished.error is not None and "made no new code" in finished.error


class CrowdedStore(FakeStore):
    """A store where the first code of every batch of several is taken already."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        self.batches.append(len(codes))
        if len(codes) == 1:
            return await super().add_codes(codes)
        return [False, *await super().add_codes(codes[1:])]


@pytest.mark.timeout(10)
async def test_a_job_of_many_batches_that_meet_taken_codes_ends_with_its_quantity() -> None:
    job = job_of(25, {"includeCheck": True}, "FiveByFive")
    store = CrowdedStore()
    await store.create_job(job)
    finished, added = await generate_codes.generate(store, job, lambda: NOW, new_id, batch=10)
    assert (finished.state, finished.done, added) == (JobState.COMPLETED, 25, [])
    assert await store.get_job("job-1") == finished
    taken = sum(1 for size in store.batches if size > 1)
    assert sum(store.batches) == 25 + taken, "one taken a batch, drawn again"
    assert max(store.batches) == 10
    codes = list(store.codes.values())
    assert len({code.redemption_code_id for code in codes}) == len(codes) == 25
    assert all(code.key == code.scan_code.replace("-", "") for code in codes)


# Over HTTP: inline and as a job, checked against the campaign's whole inventory.


@pytest.fixture
async def api(api: httpx.AsyncClient) -> httpx.AsyncClient:
    """The API, with a campaign `gems`."""
    await api.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)
    return api


GENERATE = "/v1/campaigns/gems/codes/generate"


@pytest.mark.timeout(10)
async def test_inline_generation_of_more_codes_than_a_format_holds_is_refused(
    api: httpx.AsyncClient,
) -> None:
    tiny = {"alphabet": "AB", "length": 4}  # 16 codes at most
    answer = await api.post(
        GENERATE,
        json={
            "quantity": 100,
            "inline": True,
            "algorithmName": "Custom",
            "algorithmDetailsJson": tiny,
        },
        headers=ADMIN,
    )
    assert (answer.status_code, answer.json()["reasonCode"]) == (422, 40660)
    message = answer.json()["message"]
    assert "4.0 bits of randomness" in message and "at least 46.7" in message
    inventory = await api.get("/v1/campaigns/gems/inventory", headers=ADMIN)
    assert inventory.json()["total"] == 0


async def test_a_job_is_refused_when_the_campaign_it_would_fill_needs_more_randomness(
    api: httpx.AsyncClient, broker: RecordingBroker
) -> None:
    nine = {"length": 9, "group": 0}  # 9 of 31 symbols: 44.5 bits, room for 24 codes
    job = {"quantity": 20, "algorithmName": "Custom", "algorithmDetailsJson": nine}
    assert (await api.post(GENERATE, json=job, headers=ADMIN)).status_code == 202
    lines = "scanCode\n" + "\n".join(f"IMPORTED{n}" for n in range(10))
    await api.post("/v1/campaigns/gems/codes/import", content=lines, headers=ADMIN)

    answer = await api.post(GENERATE, json=job, headers=ADMIN)

    assert (answer.status_code, answer.json()["reasonCode"]) == (422, 40660)
    assert "a campaign of 30 codes needs at least 45.0" in answer.json()["message"]
    assert len(broker.published) == 1, "no job was started for the refused request"


async def test_inline_generation_with_room_to_spare_still_makes_its_codes(
    api: httpx.AsyncClient,
) -> None:
    body = {"quantity": 100, "inline": True, "algorithmName": "Custom"}
    answer = await api.post(GENERATE, json=body, headers=ADMIN)
    assert answer.status_code == 200
    codes = answer.json()["generatedScanCodes"]
    assert len(set(codes)) == 100 and all(set(c) <= set(UNAMBIGUOUS + "-") for c in codes)
