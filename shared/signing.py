"""Webhook signatures: HMAC-SHA256 with the handler's own key, named by its key id.

Every webhook try carries three headers:

- `X-Redemption-Timestamp`: when it was signed, in epoch milliseconds;
- `Idempotency-Key`: the request's key (the same on every try of one call);
- `X-Redemption-Signature`: `keyId=<key id>,sha256=<hex digest>`.

The digest is the HMAC-SHA256, with the secret of the key named, of the
canonical string: the method, the URL exactly as the campaign's `webhookUrl`
has it, the timestamp and the idempotency key, each followed by a line feed,
then the body's exact bytes. A receiver looks the key up by its id, recomputes
the digest, compares in constant time and refuses a timestamp more than
`DEFAULT_TOLERANCE_MS` from its clock (CONTRIBUTING.md, "The partner
contract: verifying a webhook").

Keys come from `REDEEM_WEBHOOK_SECRETS`, each handler's oldest first: the
last one signs, and all of them stay valid for a receiver until removed, so
that a partner can rotate (`Keyring`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

TIMESTAMP_HEADER = "X-Redemption-Timestamp"
SIGNATURE_HEADER = "X-Redemption-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE_MS = 5 * 60 * 1000
# The handler name whose keys serve every handler that has none of its own.
ANY_HANDLER = "*"
MIN_SECRET_CHARS = 16
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,16}")


@dataclass(frozen=True)
class Key:
    """One signing key: its id travels in the signature header, its secret never."""

    key_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class Keyring:
    """Each handler's keys, oldest first: the last one signs, every one verifies."""

    by_handler: Mapping[str, tuple[Key, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Keyring:
        """`HANDLER=KEYID:SECRET[,KEYID:SECRET...][;HANDLER=...]`, `*` for any handler
        without its own keys. A ValueError names what is wrong, never a secret."""
        by_handler: dict[str, tuple[Key, ...]] = {}
        entries = (part.strip() for part in spec.split(";"))
        for n, entry in enumerate(filter(None, entries), start=1):
            handler, sep, keys = (part.strip() for part in entry.partition("="))
            if not sep or not handler:
                raise ValueError(f"webhook secrets entry {n} is not HANDLER=KEYID:SECRET,...")
            if handler in by_handler:
                raise ValueError(f"webhook secrets name handler {handler!r} twice")
            by_handler[handler] = _keys(handler, keys)
        return cls(by_handler)

    def keys(self, handler: str) -> tuple[Key, ...]:
        """The keys of `handler`, or those of `*` when it has none of its own."""
        return self.by_handler.get(handler) or self.by_handler.get(ANY_HANDLER, ())

    def signing_key(self, handler: str) -> Key | None:
        """The key that signs `handler`'s webhooks: its newest."""
        keys = self.keys(handler)
        return keys[-1] if keys else None

    def secrets(self, handler: str) -> dict[str, str]:
        """What a receiver verifies `handler`'s webhooks with: secret by key id."""
        return {key.key_id: key.secret for key in self.keys(handler)}


def _keys(handler: str, spec: str) -> tuple[Key, ...]:
    keys: list[Key] = []
    for n, item in enumerate((part.strip() for part in spec.split(",")), start=1):
        key_id, sep, secret = (part.strip() for part in item.partition(":"))
        if not sep:
            raise ValueError(f"key {n} of handler {handler!r} is not KEYID:SECRET")
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError(
                f"key {n} of handler {handler!r}: a key id is 1 to 64 letters, digits, '.',"
                " '_' or '-'"
            )
        if any(key.key_id == key_id for key in keys):
            raise ValueError(f"handler {handler!r} has key id {key_id!r} twice")
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(
                f"the secret of key {key_id!r} of handler {handler!r} is shorter than"
                f" {MIN_SECRET_CHARS} characters"
            )
        keys.append(Key(key_id, secret))
    return tuple(keys)


def canonical(method: str, url: str, timestamp_ms: int, idempotency_key: str, body: bytes) -> bytes:
    """What is signed: method, URL, timestamp and idempotency key, a line each, then the body."""
    return f"{method.upper()}\n{url}\n{timestamp_ms}\n{idempotency_key}\n".encode() + body


def digest(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def headers(
    key: Key, method: str, url: str, timestamp_ms: int, idempotency_key: str, body: bytes
) -> dict[str, str]:
    """The headers that sign one request."""
    signed = digest(key.secret, canonical(method, url, timestamp_ms, idempotency_key, body))
    return {
        TIMESTAMP_HEADER: str(timestamp_ms),
        IDEMPOTENCY_HEADER: idempotency_key,
        SIGNATURE_HEADER: f"keyId={key.key_id},sha256={signed}",
    }


def signed_with(signature_header: str | None) -> tuple[str, str] | None:
    """The key id and hex digest a signature header carries, or None if it is malformed."""
    fields = dict(part.strip().partition("=")[::2] for part in (signature_header or "").split(","))
    key_id, hex_digest = fields.get("keyId"), fields.get("sha256")
    return (key_id, hex_digest) if key_id and hex_digest else None


def refusal(
    secrets: Mapping[str, str],
    method: str,
    url: str,
    received: Mapping[str, str],
    body: bytes,
    now_ms: int,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
) -> str | None:
    """Why a request with `received` headers is not a recent one signed with one of
    `secrets` (secret by key id); None when it is."""
    timestamp = received.get(TIMESTAMP_HEADER) or ""
    signature = signed_with(received.get(SIGNATURE_HEADER))
    if signature is None or not _TIMESTAMP.fullmatch(timestamp):
        return "no signature, or no timestamp"
    if abs(now_ms - int(timestamp)) > tolerance_ms:
        return "the timestamp is too far from now"
    key_id, hex_digest = signature
    secret = secrets.get(key_id)
    if secret is None:
        return f"unknown key id {key_id!r}"
    idempotency_key = received.get(IDEMPOTENCY_HEADER) or ""
    expected = digest(secret, canonical(method, url, int(timestamp), idempotency_key, body))
    if not hmac.compare_digest(expected.encode(), hex_digest.encode()):
        return "the signature does not match"
    return None
