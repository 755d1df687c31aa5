"""Generated codes: formats, uniformity, and a check character that catches typos."""

from __future__ import annotations

import dataclasses
import random
import re
import secrets
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.generation import HEX, UNAMBIGUOUS, Format, alike, time_ordered_ids
from shared.domain.model import new_code
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import checked, normalise
from shared.domain.states import CodeState

FORMATS = {
    "five-by-five": Format.named("FiveByFive", {"includeCheck": True}),
    "guid": Format.named("StructuredGuid", {"includeCheck": True}),
    "custom": Format.named("Custom", {"length": 10, "group": 5, "includeCheck": True}, "GC"),
    "hex-custom": Format.named(
        "Custom", {"alphabet": "23456789ABCDEF", "length": 8, "includeCheck": True}
    ),
}


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


def codes(fmt: Format, count: int, seed: int = 7) -> list[str]:
    return fmt.generate(count, seeded(seed).randbytes)


def body(fmt: Format, code: str) -> str:
    return normalise(code)[len(fmt.prefix or "") :]


def retyped(fmt: Format, code: str, chars: str) -> str:
    return (fmt.prefix or "") + chars


@pytest.mark.parametrize("name", FORMATS)
def test_every_single_substitution_is_caught(name: str) -> None:
    fmt = FORMATS[name]
    for code in codes(fmt, 20):
        chars = body(fmt, code)
        assert fmt.verify(code)
        for position in range(len(chars)):
            for symbol in set(fmt.alphabet) - {chars[position]}:
                typo = chars[:position] + symbol + chars[position + 1 :]
                assert not fmt.verify(retyped(fmt, code, typo)), (code, position, symbol)


@pytest.mark.parametrize("name", FORMATS)
def test_every_adjacent_transposition_is_caught(name: str) -> None:
    fmt = FORMATS[name]
    for code in codes(fmt, 200):
        chars = body(fmt, code)
        for i in range(len(chars) - 1):
            if chars[i] != chars[i + 1]:
                swapped = chars[:i] + chars[i + 1] + chars[i] + chars[i + 2 :]
                assert not fmt.verify(retyped(fmt, code, swapped)), (code, i)


@settings(max_examples=200)
@given(seed=st.integers(0, 2**32), position=st.integers(0, 24), shift=st.integers(1, 30))
def test_a_typo_anywhere_is_caught(seed: int, position: int, shift: int) -> None:
    fmt = FORMATS["five-by-five"]
    [code] = codes(fmt, 1, seed)
    chars = body(fmt, code)
    alphabet = fmt.alphabet
    if chars[position] in alphabet:
        wrong = alphabet[(alphabet.index(chars[position]) + shift) % len(alphabet)]
        typo = chars[:position] + wrong + chars[position + 1 :]
        assert not fmt.verify(typo)


@pytest.mark.parametrize("name", FORMATS)
def test_generated_codes_parse_back_however_they_are_typed(name: str) -> None:
    fmt = FORMATS[name]
    for code in codes(fmt, 500):
        assert fmt.verify(code) and fmt.verify(code.lower().replace("-", " "))
        assert checked(code) == normalise(code) == normalise(normalise(code))


def test_the_named_formats_look_as_the_reference_says() -> None:
    [five] = codes(Format.named("FiveByFive", {}), 1)
    assert re.fullmatch(rf"([{UNAMBIGUOUS}]{{5}}-){{4}}[{UNAMBIGUOUS}]{{5}}", five)
    [guid] = codes(Format.named("StructuredGuid", {}), 1)
    assert re.fullmatch(rf"[{HEX}]{{8}}(-[{HEX}]{{4}}){{3}}-[{HEX}]{{12}}", guid)
    [custom] = codes(FORMATS["custom"], 1)
    assert re.fullmatch(rf"GC-[{UNAMBIGUOUS}]{{5}}-[{UNAMBIGUOUS}]{{4}}[{UNAMBIGUOUS}G]", custom)
    assert not set("01OIL") & set(UNAMBIGUOUS)


def test_a_hundred_thousand_codes_are_distinct() -> None:
    generated = codes(Format.named("FiveByFive", {"includeCheck": True}), 100_000)
    assert len(set(generated)) == 100_000


def test_every_symbol_is_equally_likely() -> None:
    fmt = Format.named("Custom", {"length": 20, "group": 0})
    counts = Counter("".join(body(fmt, c) for c in codes(fmt, 20_000)))
    expected = 20_000 * 20 / len(UNAMBIGUOUS)
    chi_square = sum((counts[s] - expected) ** 2 / expected for s in UNAMBIGUOUS)
    assert set(counts) == set(UNAMBIGUOUS)
    assert chi_square < 80, chi_square  # 30 degrees of freedom: p < 1e-6 beyond this


@pytest.mark.parametrize(
    ("name", "details", "prefix"),
    [
        ("Nope", {}, None),
        ("FiveByFive", {"includeCheck": "yes"}, None),
        ("Custom", {"alphabet": "ABCA"}, None),
        ("Custom", {"alphabet": "AB0C"}, None),
        ("Custom", {"alphabet": "ab-c"}, None),
        ("Custom", {"length": 3}, None),
        ("Custom", {"length": 65}, None),
        ("FiveByFive", {}, "BAD PREFIX!"),
    ],
)
def test_a_format_that_cannot_be_is_refused(
    name: str, details: dict[str, object], prefix: str | None
) -> None:
    with pytest.raises(DomainError) as refused:
        Format.named(name, details, prefix)
    assert refused.value.reason is ReasonCode.INVALID_PARAMETER_VALUE


@pytest.mark.parametrize("name", FORMATS)
def test_codes_come_with_their_normalised_forms(name: str) -> None:
    fmt = FORMATS[name]
    made, keys = fmt.generate_keyed(500, seeded(3).randbytes)
    assert keys == [normalise(code) for code in made]
    assert all(fmt.verify(code) for code in made)


def test_bulk_ids_are_uuids_of_version_7_in_the_order_they_were_made() -> None:
    earlier = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    first = time_ordered_ids(1_000, earlier, secrets.token_bytes)
    then = time_ordered_ids(1_000, earlier + timedelta(milliseconds=1), secrets.token_bytes)
    parsed = [uuid.UUID(code_id) for code_id in first + then]
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert [str(u) for u in parsed] == first + then, "lower-case, hyphenated"
    assert len(set(first + then)) == 2_000
    assert max(first) < min(then), "a later instant sorts after"
    assert int(first[0][:8] + first[0][9:13], 16) == round(earlier.timestamp() * 1000)


def test_a_code_made_alike_equals_one_made_by_its_constructor() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    first = new_code(
        "gems", "AB-1", CodeState.AVAILABLE, {"n": 1}, now=now, new_id=lambda: "c1", job_id="j"
    )
    made = alike(first, redemption_code_id="c2", scan_code="CD-2", key="CD2")
    assert made == dataclasses.replace(first, redemption_code_id="c2", scan_code="CD-2", key="CD2")
    assert first.redemption_code_id == "c1", "the first is left as it was"
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.version = 2  # type: ignore[misc]
