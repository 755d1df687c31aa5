"""The front door's rules: apps and servers as configured, passwords, signatures and
sessions (shared/domain/profiles.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.access import digest_of
from shared.domain.profiles import (
    Apps,
    Servers,
    Session,
    hash_password,
    password_matches,
    signature_matches,
)
from shared.domain.reasons import DomainError, ReasonCode

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("spec", ["=secret", "app=", "app", "app=s|owners=x", "app=s|campaigns="])
def test_an_app_entry_without_its_parts_stops_the_service(spec: str) -> None:
    with pytest.raises(ValueError, match="REDEEM_BRAINCLOUD_APPS"):
        Apps.parse(spec)


def test_apps_keep_their_secrets_and_campaigns_and_refuse_an_unknown_id() -> None:
    apps = Apps.parse("10001=s1|campaigns=gems; 10002=s2")
    assert apps.get("10001").secret == "s1"
    assert apps.get("10001").grant.campaigns == frozenset({"gems"})
    assert apps.get("10002").grant.campaigns is None
    with pytest.raises(DomainError) as refused:
        apps.get("10003")
    assert refused.value.reason is ReasonCode.INVALID_GAME_ID


def test_a_server_is_admitted_by_its_secret_or_the_digest_of_it() -> None:
    servers = Servers.parse(f"plain=s3cret;hashed={digest_of('other')}|handlers=h")
    assert servers.admit("plain", "s3cret").name == "plain"
    assert servers.admit("hashed", "other").grant.handlers == frozenset({"h"})
    for name, secret in [("plain", "wrong"), ("hashed", digest_of("other")), ("nobody", "x")]:
        with pytest.raises(DomainError) as refused:
            servers.admit(name, secret)
        assert refused.value.reason is ReasonCode.TOKEN_DOES_NOT_MATCH_USER


def test_a_server_secret_written_as_a_bad_digest_stops_the_service() -> None:
    with pytest.raises(ValueError, match="REDEEM_BRAINCLOUD_SERVERS"):
        Servers.parse("srv=sha256:abc")


def test_a_password_hash_is_salted_and_checks_its_password_only() -> None:
    first, second = hash_password("hunter2"), hash_password("hunter2")
    assert first != second and first.startswith("scrypt$")
    assert password_matches("hunter2", first) and password_matches("hunter2", second)
    assert not password_matches("hunter3", first)
    assert not password_matches("hunter2", "bcrypt$x$y")


def test_a_signature_is_the_md5_of_the_body_and_the_secret_in_either_case() -> None:
    body = '{"messages":[],"scanCode":"CAFÉ"}'.encode()
    signature = hashlib.md5(body + b"secret").hexdigest()
    assert signature_matches(body, "secret", signature)
    assert signature_matches(body, "secret", signature.upper())
    assert not signature_matches(body + b" ", "secret", signature)
    assert not signature_matches(body, "secret", "é" * 32)


def test_a_session_past_its_expiry_is_refused_as_a_clients_or_a_servers() -> None:
    client = Session("s1", "app", NOW + timedelta(seconds=10), profile_id="p")
    server = Session("s2", "app", NOW + timedelta(seconds=10), server_name="srv")
    client.check_alive(NOW)
    for session, reason in [
        (client, ReasonCode.PLAYER_SESSION_EXPIRED),
        (server, ReasonCode.SERVER_SESSION_EXPIRED),
    ]:
        with pytest.raises(DomainError) as refused:
            session.check_alive(NOW + timedelta(seconds=10))
        assert refused.value.reason is reason


def test_only_the_last_packets_answer_is_replayed() -> None:
    session = Session("s1", "app", NOW, profile_id="p", last_packet_id=4, last_answer="{}")
    assert session.replay(4) == "{}"
    assert session.replay(3) is None and session.replay(5) is None
