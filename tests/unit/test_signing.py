"""Webhook signatures: the canonical string, key ids, rotation, and what a receiver refuses."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import ValidationError

from shared import signing
from shared.runtime.settings import Settings
from shared.signing import Key, Keyring

OLD = Key("2026-01", "old-secret-0123456789")
NEW = Key("2026-06", "new-secret-0123456789")
URL = "https://partner.example/fulfil?region=eu"
KEY = "r-1:0"
BODY = b'{"scanCode":"ABC","attempt":0}\n'
NOW_MS = 1_800_000_000_000


def sign(key: Key = NEW) -> dict[str, str]:
    return signing.headers(key, "POST", URL, NOW_MS, KEY, BODY)


def refusal(
    received: Mapping[str, str],
    secrets: Mapping[str, str] | None = None,
    *,
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    now_ms: int = NOW_MS,
) -> str | None:
    """Why a receiver holding `secrets` (the newest key's) refuses the request."""
    held = {NEW.key_id: NEW.secret} if secrets is None else secrets
    return signing.refusal(held, method, url, received, body, now_ms)


def test_the_canonical_string_is_method_url_timestamp_and_key_a_line_each_then_the_body() -> None:
    assert signing.canonical("post", URL, NOW_MS, KEY, BODY) == (
        b"POST\nhttps://partner.example/fulfil?region=eu\n1800000000000\nr-1:0\n"
        b'{"scanCode":"ABC","attempt":0}\n'
    )


def test_the_signature_header_names_the_key_and_carries_the_hmac_of_the_canonical_string() -> None:
    headers = sign()
    canonical = signing.canonical("POST", URL, NOW_MS, KEY, BODY)
    expected = hmac.new(NEW.secret.encode(), canonical, hashlib.sha256).hexdigest()
    assert headers == {
        "X-Redemption-Timestamp": str(NOW_MS),
        "Idempotency-Key": KEY,
        "X-Redemption-Signature": f"keyId=2026-06,sha256={expected}",
    }
    assert refusal(headers) is None


@pytest.mark.parametrize(
    "changed",
    [{"method": "PUT"}, {"url": URL + "&x=1"}, {"body": BODY + b" "}],
    ids=["method", "url", "body"],
)
def test_a_request_differing_in_anything_signed_does_not_verify(changed: dict[str, Any]) -> None:
    assert refusal(sign(), **changed) == "the signature does not match"


def test_a_changed_timestamp_or_idempotency_key_does_not_verify() -> None:
    later = sign() | {signing.TIMESTAMP_HEADER: str(NOW_MS + 1)}
    assert refusal(later) == "the signature does not match"
    other_key = sign() | {signing.IDEMPOTENCY_HEADER: "r-1:1"}
    assert refusal(other_key) == "the signature does not match"


def test_a_key_is_looked_up_by_the_id_the_header_names() -> None:
    assert refusal(sign(OLD)) == "unknown key id '2026-01'"
    assert refusal(sign(Key(NEW.key_id, "another-secret-0123456")))  # same id, other secret


def test_rotation_the_newest_key_signs_and_every_listed_key_still_verifies() -> None:
    ring = Keyring.parse(f"hook={OLD.key_id}:{OLD.secret},{NEW.key_id}:{NEW.secret}")
    assert ring.signing_key("hook") == NEW
    receiver = ring.secrets("hook")
    assert refusal(sign(OLD), receiver) is None  # still in flight from before the switch
    assert refusal(sign(NEW), receiver) is None
    retired = Keyring.parse(f"hook={NEW.key_id}:{NEW.secret}").secrets("hook")
    assert refusal(sign(OLD), retired) == "unknown key id '2026-01'"


def test_a_handler_without_keys_of_its_own_uses_the_keys_of_any_handler() -> None:
    ring = Keyring.parse(f"mint={OLD.key_id}:{OLD.secret}; * = {NEW.key_id}:{NEW.secret}")
    assert ring.signing_key("mint") == OLD
    assert ring.signing_key("stock") == NEW
    assert Keyring.parse(f"mint={OLD.key_id}:{OLD.secret}").signing_key("stock") is None
    assert Keyring.parse("").signing_key("mint") is None


def test_a_timestamp_too_far_from_now_is_refused_as_a_replay() -> None:
    tolerance = signing.DEFAULT_TOLERANCE_MS
    assert refusal(sign(), now_ms=NOW_MS + tolerance) is None
    assert refusal(sign(), now_ms=NOW_MS + tolerance + 1) == "the timestamp is too far from now"
    assert refusal(sign(), now_ms=NOW_MS - tolerance - 1) == "the timestamp is too far from now"


@pytest.mark.parametrize(
    "received",
    [
        {},
        {signing.SIGNATURE_HEADER: "sha256=00"},
        {signing.SIGNATURE_HEADER: "keyId=2026-06"},
        {signing.TIMESTAMP_HEADER: "¹²³"},
        {signing.TIMESTAMP_HEADER: "soon"},
        {signing.SIGNATURE_HEADER: "garbage"},
    ],
)
def test_a_malformed_signature_or_timestamp_is_refused(received: dict[str, str]) -> None:
    headers = sign() | received
    if not received:
        headers = {signing.IDEMPOTENCY_HEADER: KEY}
    assert refusal(headers) == "no signature, or no timestamp"


def test_a_digest_that_is_not_ascii_is_refused_not_an_error() -> None:
    headers = sign() | {signing.SIGNATURE_HEADER: "keyId=2026-06,sha256=é"}
    assert refusal(headers) == "the signature does not match"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("hook", "entry 1 is not HANDLER=KEYID:SECRET"),
        ("=k:0123456789abcdef", "entry 1 is not HANDLER=KEYID:SECRET"),
        ("hook=0123456789abcdef", "key 1 of handler 'hook' is not KEYID:SECRET"),
        ("hook=k 1:0123456789abcdef", "a key id is 1 to 64 letters"),
        ("hook=k:0123456789abcdef,k:0123456789abcdeX", "has key id 'k' twice"),
        ("hook=k:0123456789abcdef;hook=j:0123456789abcdef", "name handler 'hook' twice"),
        ("hook=k:short-secret", "shorter than 16 characters"),
        ("hook=k:0123456789abcdef,", "key 2 of handler 'hook' is not KEYID:SECRET"),
    ],
)
def test_malformed_webhook_secrets_stop_a_service_at_start_naming_the_problem(
    spec: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Keyring.parse(spec)
    with pytest.raises(ValidationError) as refused:
        Settings(webhook_secrets=spec)
    assert problem in str(refused.value)
    for secret in ("0123456789abcdef", "short-secret"):
        assert secret not in str(refused.value)  # never in a log


def test_the_retired_single_webhook_secret_stops_a_service_at_start() -> None:
    with pytest.raises(ValidationError, match="REDEEM_WEBHOOK_SECRETS") as refused:
        Settings(webhook_secret="the-old-shared-secret")
    assert "the-old-shared-secret" not in str(refused.value)


def test_a_key_never_shows_its_secret() -> None:
    assert NEW.secret not in repr(Keyring.parse(f"hook={NEW.key_id}:{NEW.secret}"))


def test_the_example_in_contributing_signs_as_documented() -> None:
    body = b'{"scanCode":"ABC","attempt":0}'
    headers = signing.headers(NEW, "POST", "https://partner.example/fulfil", NOW_MS, KEY, body)
    assert headers[signing.SIGNATURE_HEADER] == (
        "keyId=2026-06,sha256=9a0744680480348f2fcd8b93af542047ea1d7b9f5d7be9dc2f5d9c3557d2c684"
    )
