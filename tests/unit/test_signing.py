"""Webhook signatures: what a receiver accepts and refuses."""

from shared import signing

SECRET = "s3cret"
BODY = b'{"scanCode":"ABC","attempt":0}'
NOW_MS = 1_800_000_000_000


def test_a_signed_body_verifies() -> None:
    headers = signing.headers(SECRET, NOW_MS, BODY)
    assert headers[signing.SIGNATURE_HEADER].startswith("sha256=")
    assert signing.verify(
        SECRET, headers[signing.TIMESTAMP_HEADER], headers[signing.SIGNATURE_HEADER], BODY, NOW_MS
    )


def test_a_changed_body_timestamp_or_secret_does_not_verify() -> None:
    signed = signing.signature(SECRET, NOW_MS, BODY)
    stamp = str(NOW_MS)
    assert not signing.verify(SECRET, stamp, signed, BODY.replace(b"0", b"1"), NOW_MS)
    assert not signing.verify(SECRET, str(NOW_MS + 1), signed, BODY, NOW_MS)
    assert not signing.verify("other", stamp, signed, BODY, NOW_MS)
    assert not signing.verify(SECRET, None, signed, BODY, NOW_MS)
    assert not signing.verify(SECRET, "soon", signed, BODY, NOW_MS)


def test_an_old_signature_is_refused_as_a_replay() -> None:
    signed = signing.signature(SECRET, NOW_MS, BODY)
    later = NOW_MS + signing.DEFAULT_TOLERANCE_MS + 1
    assert signing.verify(SECRET, str(NOW_MS), signed, BODY, NOW_MS + 1000)
    assert not signing.verify(SECRET, str(NOW_MS), signed, BODY, later)
