"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body sent.

Headers: `X-Redemption-Timestamp` (epoch milliseconds) and
`X-Redemption-Signature` (`sha256=<hex digest>` of `<timestamp>.<body>`).
A receiver recomputes the digest with the shared secret, compares in
constant time and refuses timestamps too far from its clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Redemption-Timestamp"
SIGNATURE_HEADER = "X-Redemption-Signature"
DEFAULT_TOLERANCE_MS = 5 * 60 * 1000


def signature(secret: str, timestamp_ms: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp_ms}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def headers(secret: str, timestamp_ms: int, body: bytes) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp_ms),
        SIGNATURE_HEADER: signature(secret, timestamp_ms, body),
    }


def verify(
    secret: str,
    timestamp: str | None,
    signed: str | None,
    body: bytes,
    now_ms: int,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
) -> bool:
    """Whether `signed` is the signature of `body` at `timestamp`, and that is recent."""
    if not timestamp or not signed or not timestamp.isdigit():
        return False
    if abs(now_ms - int(timestamp)) > tolerance_ms:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), signed)
