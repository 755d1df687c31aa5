"""A message taken off a queue, settled as the broker port says: acked, dead-lettered
with the reason, or retried later through a delay queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from shared import topology
from shared.domain.access import bearer_digest
from shared.domain.reasons import DomainError
from shared.ports.broker import Publisher

# What the broker sets on a message it delivers; a new copy starts without.
_BROKER_HEADERS = ("x-delivery-count", "x-death", "x-first-death", "x-last-death")


def header_count(headers: Mapping[str, Any], name: str) -> int:
    """A count kept in a header; 0 when there is none or it is not a count."""
    value = headers.get(name, 0)
    if not isinstance(value, int | str):
        return 0
    try:
        return max(0, int(value))
    except ValueError:
        return 0


def deliveries(headers: Mapping[str, Any]) -> int:
    """Deliveries before this one: of the copies before this one (carried in a header)
    and of this copy (the quorum queue's own count)."""
    return header_count(headers, topology.DELIVERIES_HEADER) + header_count(
        headers, "x-delivery-count"
    )


def delay_step_ms(delay_s: float) -> int:
    """The shortest delay step not shorter than `delay_s`; the longest past them all."""
    steps = topology.DELAY_STEPS_MS
    return next((ms for ms in steps if ms >= delay_s * 1000), steps[-1])


def copy_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers for a new copy of a message: without those the broker set, and with
    the API key it names (`authorization`) replaced by the key's digest, so that no copy
    the service keeps carries a key, yet a delayed command comes back as its key's."""
    copy = {k: v for k, v in headers.items() if not k.startswith(_BROKER_HEADERS)}
    authorization = copy.pop(topology.AUTHORIZATION_HEADER, None)
    digest = bearer_digest(_text(authorization)) if authorization is not None else None
    if digest is not None:
        copy[topology.KEY_DIGEST_HEADER] = digest
    return copy


def _text(value: object) -> str:
    """A header's text: a string that is not UTF-8 comes as bytes, and names no key."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return ""
    return value if isinstance(value, str) else ""


class RabbitDelivery:
    """One delivery from `queue`; its copies and dead letters go out through `publisher`."""

    def __init__(self, message: AbstractIncomingMessage, queue: str, publisher: Publisher) -> None:
        self._message = message
        self._queue = queue
        self._publisher = publisher

    @property
    def body(self) -> bytes:
        return self._message.body

    @property
    def headers(self) -> Mapping[str, Any]:
        """Its headers; a key's digest only on a copy the service delayed (a sender's
        own would pass for the key)."""
        headers = self._message.headers or {}
        if topology.KEY_DIGEST_HEADER in headers and not self._delayed():
            return {k: v for k, v in headers.items() if k != topology.KEY_DIGEST_HEADER}
        return headers

    @property
    def message_id(self) -> str | None:
        return self._message.message_id

    @property
    def correlation_id(self) -> str | None:
        return self._message.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self._message.reply_to

    @property
    def routing_key(self) -> str:
        return self._origin()[1]

    @property
    def deliveries(self) -> int:
        return deliveries(self.headers)

    async def ack(self) -> None:
        await self._message.ack()

    async def dead_letter(self, error: DomainError) -> None:
        headers = dict(self.headers) | self._origin_headers()
        headers.pop(topology.AUTHORIZATION_HEADER, None)  # a key is not for whoever reads these
        headers.pop(topology.KEY_DIGEST_HEADER, None)
        headers[topology.DEAD_LETTER_REASON_HEADER] = (
            f"{int(error.reason)} {error.reason.name}: {error.message}"[:1000]
        )
        headers[topology.DEAD_LETTER_REASON_CODE_HEADER] = int(error.reason)
        await self._publish(topology.DEAD_LETTER_EXCHANGE, self.routing_key, headers)
        await self._message.ack()

    async def retry_later(self, delay_s: float) -> None:
        headers = copy_headers(self.headers)
        headers[topology.DELIVERIES_HEADER] = self.deliveries + 1
        await self._delay(delay_s, headers)

    async def start_over(self, delay_s: float, headers: Mapping[str, Any]) -> None:
        fresh = copy_headers(self.headers) | dict(headers)
        fresh.pop(topology.DELIVERIES_HEADER, None)
        await self._delay(delay_s, fresh)

    async def release(self) -> None:
        if not self._message.processed:
            await self._message.nack(requeue=True)

    async def _delay(self, delay_s: float, headers: dict[str, Any]) -> None:
        """The copy to the delay queue of the step for `delay_s`, routed back here by
        this queue's name, then this delivery acked.

        At least once: the copy is confirmed before this delivery is acked, so a crash
        in between leaves both on the queue. The consumers take the extra one as they
        take any redelivery: a redemption job is idempotent by its redemption id (it
        resumes, never claims twice), a generation job resumes from the codes stored,
        and a command publishes the same job again.
        """
        headers |= self._origin_headers()
        headers[topology.DELAY_HEADER] = str(delay_step_ms(delay_s))
        await self._publish(topology.DELAY_EXCHANGE, self._queue, headers)
        await self._message.ack()

    async def _publish(self, exchange: str, routing_key: str, headers: dict[str, Any]) -> None:
        await self._publisher.publish(
            exchange,
            routing_key,
            self.body,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            headers=headers,
        )

    def _origin(self) -> tuple[str, str]:
        """The exchange and routing key the message was first published with: a delayed
        copy comes back by the retry exchange, carrying them in headers."""
        exchange, routing_key = self._message.exchange or "", self._message.routing_key or ""
        if not self._delayed():
            return exchange, routing_key
        return (
            str(self.headers.get(topology.ORIGINAL_EXCHANGE_HEADER, "")),
            str(self.headers.get(topology.ORIGINAL_ROUTING_KEY_HEADER, "")),
        )

    def _delayed(self) -> bool:
        """A copy the service delayed, back by the retry exchange."""
        return self._message.exchange == topology.RETRY_EXCHANGE

    def _origin_headers(self) -> dict[str, Any]:
        exchange, routing_key = self._origin()
        return {
            topology.ORIGINAL_EXCHANGE_HEADER: exchange,
            topology.ORIGINAL_ROUTING_KEY_HEADER: routing_key,
        }
