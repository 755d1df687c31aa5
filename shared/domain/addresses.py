"""Which addresses a webhook may reach: public ones, and the others an operator allow-listed.

A webhook URL names a host; what it resolves to decides where the call goes.
Left alone, a campaign's URL could make a worker call the service's own
network: a database on localhost, an admin port on 10.x, a cloud metadata
endpoint on 169.254.169.254. So every address but a public unicast one
(loopback, private, link-local, unspecified, multicast, reserved, shared
address space) is refused unless it lies in an allow-listed network
(`REDEEM_WEBHOOK_ALLOWED_NETWORKS`). An IPv6 address that carries an IPv4 one
(mapped `::ffff:a.b.c.d`, 6to4 `2002::/16`, NAT64 `64:ff9b::/96`) is judged
by the IPv4 address it leads to.

The worker applies this to every address a host resolves to, before it
connects, and connects only to an address it checked
(`services/worker/egress.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

NAT64 = IPv6Network("64:ff9b::/96")
_KINDS: tuple[tuple[str, Callable[[Address], bool]], ...] = (
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),
    ("unspecified", lambda a: a.is_unspecified),
    ("multicast", lambda a: a.is_multicast),
    ("private", lambda a: a.is_private),
    ("reserved", lambda a: a.is_reserved or bool(getattr(a, "is_site_local", False))),
    ("non-public", lambda a: not a.is_global),
)


def parse_networks(spec: str) -> tuple[Network, ...]:
    """Comma-separated networks in CIDR notation (`10.20.0.0/16,::1/128`); a bare address
    is a network of one. A ValueError names the entry that is not one."""
    networks: list[Network] = []
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        try:
            networks.append(ip_network(entry))
        except ValueError as error:
            raise ValueError(f"{entry!r} is not a network in CIDR notation ({error})") from None
    return tuple(networks)


def leads_to(address: Address) -> Address:
    """The address a connection to `address` reaches: the IPv4 address an IPv6 one
    carries (mapped, 6to4, NAT64), else `address` itself."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in NAT64:
            return IPv4Address(int(address) & 0xFFFF_FFFF)
    return address


def kind_of(address: Address) -> str | None:
    """What keeps `address` from being a public unicast one, or None when it is one."""
    reached = leads_to(address)
    return next((kind for kind, test in _KINDS if test(reached)), None)


@dataclass(frozen=True)
class AddressPolicy:
    """Public addresses, and the `allowed` networks whatever their kind."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> AddressPolicy:
        return cls(parse_networks(spec))

    def refusal(self, address: Address) -> str | None:
        """Why a webhook may not connect to `address` (its kind), or None when it may."""
        kind = kind_of(address)
        if kind is None or self.allows(address):
            return None
        return kind

    def allows(self, address: Address) -> bool:
        """Whether an allow-listed network holds `address` (or the IPv4 one it leads to)."""
        reached = leads_to(address)
        return any(a in network for network in self.allowed for a in {address, reached})
