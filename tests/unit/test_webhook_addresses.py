"""Where a webhook may connect: public addresses, and private ones only when allow-listed,
checked for every address a host resolves to, before connecting to one of them."""

from __future__ import annotations

import socket
from ipaddress import ip_address

import httpcore
import pytest
from pydantic import ValidationError

from services.worker.egress import AddressRefused, CheckedBackend
from shared.domain.addresses import AddressPolicy, kind_of, parse_networks
from shared.runtime.settings import Settings
from tests.unit.fake_network import Network, Stream

LOOPBACK_ALLOWED = AddressPolicy.parse("127.0.0.0/8,::1/128")


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.1", "private"),
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("64:ff9b::808:808", None),  # NAT64 of 8.8.8.8
    ],
)
def test_every_address_but_a_public_unicast_one_is_restricted(
    address: str, kind: str | None
) -> None:
    assert kind_of(ip_address(address)) == kind
    assert AddressPolicy().refusal(ip_address(address)) == kind


def test_an_allow_listed_network_lets_its_addresses_through_and_no_others() -> None:
    policy = AddressPolicy.parse("10.20.0.0/16, 127.0.0.0/8, ::1/128")
    for allowed in ("10.20.7.1", "127.0.0.1", "::1", "::ffff:127.0.0.2"):
        assert policy.refusal(ip_address(allowed)) is None, allowed
    assert policy.refusal(ip_address("10.21.0.1")) == "private"
    assert policy.refusal(ip_address("169.254.169.254")) == "link-local"
    assert policy.refusal(ip_address("fe80::1")) == "link-local"


def test_allowed_networks_are_cidrs_and_a_malformed_one_stops_a_service_at_start() -> None:
    assert parse_networks("") == ()
    assert [str(n) for n in parse_networks("10.0.0.0/8,::1,192.168.0.0/16")] == [
        "10.0.0.0/8",
        "::1/128",
        "192.168.0.0/16",
    ]
    for spec, problem in [("10.0.0.1/8", "has host bits set"), ("10.0.0.0/8,intranet", "intranet")]:
        with pytest.raises(ValidationError, match=problem):
            Settings(webhook_allowed_networks=spec)


def resolving(
    *addresses: str, policy: AddressPolicy | None = None
) -> tuple[CheckedBackend, Network]:
    """A backend whose every host resolves to `addresses`, and the network it connects on."""

    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    network = Network(lambda _: Stream(b""))
    return CheckedBackend(policy or AddressPolicy(), resolver=resolve, inner=network), network


async def test_a_host_resolving_to_one_private_address_among_public_ones_is_refused() -> None:
    checked, network = resolving("93.184.215.14", "2606:2800:21f::1", "10.0.0.7")
    with pytest.raises(AddressRefused) as refused:
        await checked.connect_tcp("partner.example", 443)
    assert "partner.example resolves to 10.0.0.7, a private address" in str(refused.value)
    assert network.connected == []  # nothing was connected to


async def test_loopback_is_refused_unless_allow_listed() -> None:
    refusing, _ = resolving("127.0.0.1", "::1")
    with pytest.raises(AddressRefused, match="a loopback address that is not allow-listed"):
        await refusing.connect_tcp("localhost", 8090)
    allowing, network = resolving("127.0.0.1", "::1", policy=LOOPBACK_ALLOWED)
    await allowing.connect_tcp("localhost", 8090)
    assert network.connected == [("127.0.0.1", 8090)]


async def test_the_connection_goes_to_an_address_checked_not_to_the_name() -> None:
    checked, network = resolving("93.184.215.14", "2606:2800:21f::1")
    await checked.connect_tcp("partner.example", 443)
    assert network.connected == [("93.184.215.14", 443)]


async def test_when_one_checked_address_does_not_answer_the_next_one_is_tried() -> None:
    def connect(host: str) -> Stream:
        if host == "93.184.215.14":
            raise httpcore.ConnectError("refused")
        return Stream(b"")

    async def resolve(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "2606:2800:21f::1"]

    inner = Network(connect)
    await CheckedBackend(AddressPolicy(), resolver=resolve, inner=inner).connect_tcp(
        "p.example", 443
    )
    assert inner.connected == [("93.184.215.14", 443), ("2606:2800:21f::1", 443)]


async def test_a_name_that_does_not_resolve_is_a_connection_error() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    checked = CheckedBackend(AddressPolicy(), resolver=resolve)
    with pytest.raises(httpcore.ConnectError, match=r"cannot resolve nowhere\.invalid"):
        await checked.connect_tcp("nowhere.invalid", 443)
    nowhere, _ = resolving()
    with pytest.raises(httpcore.ConnectError, match="resolves to no address"):
        await nowhere.connect_tcp("empty.example", 443)
