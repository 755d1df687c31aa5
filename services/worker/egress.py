"""Webhook connections go only to addresses checked after DNS resolution.

`CheckedBackend` is an httpcore network backend (httpcore's documented
extension point for custom DNS and connection handling): for each new
connection it resolves the host itself, refuses the call when any address the
host resolves to is one the `AddressPolicy` refuses, then connects to one of
exactly the addresses it checked. A name that resolves elsewhere a moment later
(DNS rebinding) cannot move a connection, because nothing resolves it again.
The URL, the Host header, TLS's server name and certificate check stay the
host's: only the TCP connection is pinned. A connection kept alive by the pool
was checked when it was made.

The pool never reads proxy settings from the environment and never follows
redirects.
"""

from __future__ import annotations

import asyncio
import socket
import typing
from collections.abc import Awaitable, Callable
from ipaddress import ip_address

import httpcore

from shared.domain.addresses import Address, AddressPolicy

Resolve = Callable[[str, int], Awaitable[list[str]]]


class AddressRefused(Exception):
    """A webhook's host resolves to an address the policy refuses; nothing was sent."""


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """Connects to a host's addresses only once every one of them is allowed."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolve = resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failed: httpcore.ConnectError | None = None
        for address in await self.checked(host, port, timeout):
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as error:  # the next address may answer
                failed = error
        assert failed is not None  # checked() gives at least one address
        raise failed

    async def checked(self, host: str, port: int, timeout_s: float | None) -> list[Address]:
        """The addresses `host` resolves to, each one allowed; AddressRefused otherwise."""
        try:
            async with asyncio.timeout(timeout_s):
                found = [ip_address(a) for a in await self._resolve(host, port)]
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        if not found:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        for address in found:
            kind = self._policy.refusal(address)
            if kind is not None:
                raise AddressRefused(
                    f"{host} resolves to {address}, a {kind} address that is not allow-listed"
                    " (REDEEM_WEBHOOK_ALLOWED_NETWORKS)"
                )
        return found

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def connection_pool(
    policy: AddressPolicy, *, resolver: Resolve = resolve
) -> httpcore.AsyncConnectionPool:
    """The webhook transport's connections: pooled per host, each to a checked address."""
    return httpcore.AsyncConnectionPool(
        network_backend=CheckedBackend(policy, resolver=resolver), max_connections=100
    )
