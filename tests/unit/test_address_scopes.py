"""The per-address failure limit counts an IPv6 caller by its /64, the network one
subscriber gets, so rotating through its addresses does not buy more guesses; an IPv4
address (or one carried in IPv6) counts by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.domain.throttling import Caller, FailureLimits, Limit, address_scope

ADDRESSES = FailureLimits(user=None, address=Limit(5, timedelta(minutes=15)))


@pytest.mark.parametrize(
    ("address", "counted"),
    [
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::ffff:c000:0207", "192.0.2.7"),
        ("testclient", "testclient"),
    ],
)
def test_an_address_counts_as_its_ipv6_64_or_as_itself(address: str, counted: str) -> None:
    assert address_scope(address) == counted


def test_a_caller_rotating_through_its_64_is_one_address_scope() -> None:
    scopes = {
        scope
        for n in range(1, 50)
        for scope, _ in Caller("u", address=f"2001:db8:aa:bb::{n:x}").scopes(ADDRESSES)
    }
    assert scopes == {"address:2001:db8:aa:bb::/64"}
    [(other, _)] = Caller("u", address="2001:db8:aa:bc::1").scopes(ADDRESSES)
    assert other == "address:2001:db8:aa:bc::/64"


def test_ipv4_callers_stay_apart_and_are_one_with_their_ipv6_mapped_form() -> None:
    [(one, _)] = Caller("u", address="198.51.100.1").scopes(ADDRESSES)
    [(two, _)] = Caller("u", address="198.51.100.2").scopes(ADDRESSES)
    [(mapped, _)] = Caller("u", address="::ffff:198.51.100.1").scopes(ADDRESSES)
    assert (one, two, mapped) == (
        "address:198.51.100.1",
        "address:198.51.100.2",
        "address:198.51.100.1",
    )
