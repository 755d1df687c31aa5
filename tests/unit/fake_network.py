"""A network for httpcore without sockets: each connection answers with canned bytes,
records what it was sent, and may drip its answer's body a byte at a time."""

from __future__ import annotations

import asyncio
import ssl
import typing
from collections.abc import Callable

import httpcore
import httpx


class Stream(httpcore.AsyncNetworkStream):
    def __init__(self, answer: bytes, drip_s: float | None = None) -> None:
        self._unread = answer
        self._drip_s = drip_s
        self.sent = bytearray()
        self.server_name: str | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        if not self._unread and self._drip_s is not None:
            await asyncio.sleep(self._drip_s)
            return b" "
        chunk, self._unread = self._unread[:max_bytes], self._unread[max_bytes:]
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        self.sent += buffer

    async def aclose(self) -> None:
        pass

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        self.server_name = server_hostname
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        return None

    def request(self) -> tuple[str, httpx.Headers, bytes]:
        """The request line, headers and body this connection was sent."""
        head, _, body = bytes(self.sent).partition(b"\r\n\r\n")
        line, *fields = head.decode().split("\r\n")
        pairs = [(name, value) for name, _, value in (f.partition(": ") for f in fields)]
        return line, httpx.Headers(pairs), body


def answer(status: int, body: bytes, *, length: bool = True) -> bytes:
    """An HTTP/1.1 answer that closes its connection; without `length`, chunked."""
    if length:
        framing, payload = f"Content-Length: {len(body)}", body
    else:
        framing, payload = (
            "Transfer-Encoding: chunked",
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
        )
    head = f"HTTP/1.1 {status} X\r\n{framing}\r\nConnection: close\r\n\r\n"
    return head.encode() + payload


class Network(httpcore.AsyncNetworkBackend):
    """Every connection made, by address, each a new `Stream` from `connect`."""

    def __init__(self, connect: Callable[[str], Stream]) -> None:
        self._connect = connect
        self.connected: list[tuple[str, int]] = []
        self.streams: list[Stream] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        stream = self._connect(host)
        self.streams.append(stream)
        return stream

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
