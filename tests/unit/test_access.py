"""API keys and their reach: `REDEEM_API_KEYS` as written before limits and digests, keys
given as digests, limits to campaigns and handlers; and the keyed redemption ids."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.domain.access import UNLIMITED, ApiKeys, Grant, digest_of
from shared.domain.model import Campaign, CodeUseType
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.redemptions import RedemptionIds
from shared.runtime.settings import Settings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def roles(keys: ApiKeys, key: str) -> frozenset[str] | None:
    grant = keys.grant(key)
    return None if grant is None else grant.roles


def test_keys_written_as_before_limits_existed_keep_their_meaning() -> None:
    keys = ApiKeys.parse(" ops = admin ; shop=redeem, fulfillment;;partner=fulfillment;")
    assert roles(keys, "ops") == frozenset({"admin"})
    assert roles(keys, "shop") == frozenset({"redeem", "fulfillment"})
    assert keys.grant("partner") == Grant(frozenset({"fulfillment"}))
    assert keys.grant("nobody") is None and keys.grant("") is None
    assert keys.grant("ops") == Grant(frozenset({"admin"}), campaigns=None, handlers=None)


def test_a_key_given_as_its_digest_admits_the_key_and_not_the_digest() -> None:
    written = digest_of("s3cret-key")
    assert written == "sha256:" + hashlib.sha256(b"s3cret-key").hexdigest()
    upper = "sha256:" + hashlib.sha256(b"other-key").hexdigest().upper()
    keys = ApiKeys.parse(f"{written}=admin;{upper}=redeem")
    assert roles(keys, "s3cret-key") == frozenset({"admin"})
    assert roles(keys, "other-key") == frozenset({"redeem"})
    assert keys.grant(written) is None


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("k=admin,root", "unknown roles"),
        ("=admin", "without a key"),
        ("sha256:abc=admin", "64 hex digits"),
        ("sha256:" + "g" * 64 + "=admin", "64 hex digits"),
        ("k=redeem|campaign=gems", "campaigns=NAME"),
        ("k=redeem|campaigns=", "campaigns=NAME"),
        ("k=redeem|handlers= , ", "campaigns=NAME"),
    ],
)
def test_a_spec_that_does_not_parse_is_refused_naming_the_problem(spec: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ApiKeys.parse(spec)
    with pytest.raises(ValidationError, match=problem):
        Settings(api_keys=spec)


def test_limits_follow_the_roles_each_with_its_list() -> None:
    keys = ApiKeys.parse("a=redeem,admin|campaigns=gems, summer sale|handlers=acme;b=fulfillment")
    assert keys.grant("a") == Grant(
        frozenset({"redeem", "admin"}),
        campaigns=frozenset({"gems", "summer sale"}),
        handlers=frozenset({"acme"}),
    )


def test_admin_holds_every_role_and_a_role_holds_only_itself() -> None:
    assert all(Grant(frozenset({"admin"})).holds(r) for r in ("redeem", "fulfillment", "admin"))
    assert not Grant(frozenset({"redeem"})).holds("fulfillment")
    assert not Grant(frozenset({"fulfillment"})).holds("admin")


def refused(check: Callable[[], None]) -> ReasonCode | None:
    try:
        check()
    except DomainError as error:
        return error.reason
    return None


def test_a_key_limited_to_campaigns_reaches_those_and_must_name_one() -> None:
    gems = Grant(frozenset({"redeem"}), campaigns=frozenset({"gems"}))
    assert refused(lambda: gems.check_campaign("gems")) is None
    assert refused(lambda: gems.check_campaign("other")) is ReasonCode.FORBIDDEN
    assert refused(lambda: gems.check_campaign(None)) is ReasonCode.FORBIDDEN
    assert refused(lambda: UNLIMITED.check_campaign(None)) is None


def campaign(code_type: str, handler: str | None) -> Campaign:
    return Campaign(code_type, CodeUseType.SINGLE, NOW, NOW, handler=handler, is_async=True)


@pytest.mark.parametrize(
    ("grant", "answers"),
    [
        (Grant(frozenset({"fulfillment"})), True),
        (Grant(frozenset({"fulfillment"}), handlers=frozenset({"acme"})), True),
        (Grant(frozenset({"fulfillment"}), handlers=frozenset({"other"})), False),
        (Grant(frozenset({"fulfillment"}), campaigns=frozenset({"other"})), False),
        (Grant(frozenset({"admin"}), campaigns=frozenset({"gems"})), True),
    ],
)
def test_a_partner_key_answers_only_attempts_of_its_handlers(grant: Grant, answers: bool) -> None:
    reason = refused(lambda: grant.check_answer(campaign("gems", "acme")))
    assert reason is (None if answers else ReasonCode.FORBIDDEN)


def test_a_key_limited_to_campaigns_reaches_only_their_lockouts() -> None:
    gems = Grant(frozenset({"admin"}), campaigns=frozenset({"gems", "b"}))
    assert gems.lockout_scopes() == ["campaign:b", "campaign:gems"]
    assert refused(lambda: gems.check_lockout("campaign:gems")) is None
    assert refused(lambda: gems.check_lockout("user:alice")) is ReasonCode.FORBIDDEN
    assert refused(lambda: gems.check_lockout("nonsense")) is ReasonCode.INVALID_PARAMETER_VALUE
    assert UNLIMITED.lockout_scopes() is None
    assert refused(lambda: UNLIMITED.check_lockout("user:alice")) is None


def test_redemption_ids_are_the_same_for_the_same_request_and_secret_only() -> None:
    ids = RedemptionIds("server-secret")
    first = ids("alice", "r-1")
    assert first == RedemptionIds("server-secret")("alice", "r-1")
    assert uuid.UUID(first).version == 8 and uuid.UUID(first).variant == uuid.RFC_4122
    others = {
        ids("alice", "r-2"),
        ids("bob", "r-1"),
        ids("alice\x1fr", "-1"),
        RedemptionIds("another-secret")("alice", "r-1"),
    }
    assert first not in others and len(others) == 4
    # No longer the public function of userId and requestId it was.
    public = uuid.uuid5(uuid.UUID("6f1c3a52-8d0e-4b7a-9a51-3c2f04d7be10"), "alice\x1fr-1")
    assert first != str(public)
    with pytest.raises(ValueError):
        RedemptionIds("")
