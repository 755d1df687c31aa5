"""The broker port: confirmed publishing, deliveries that a consumer settles once, and
the dead letters read back without taking them off their queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from shared.domain.reasons import DomainError


class Unroutable(Exception):
    """A mandatory message that no queue was bound to receive."""


class Publisher(Protocol):
    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        mandatory: bool = True,
        message_id: str | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish persistently and wait for the broker's confirm.

        Raises `Unroutable` when a mandatory message reaches no queue, and another
        error (TimeoutError, a connection error) when the broker does not confirm it:
        an unconfirmed publish is a failure.
        """


class Delivery(Protocol):
    """One message taken off a queue, for its consumer to settle exactly once.

    Settling is one of `ack`, `dead_letter`, `retry_later` and `start_over`. Each
    raises if the broker did not take it, and the message is then still unsettled:
    `release` hands it back.
    """

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, Any]: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def correlation_id(self) -> str | None: ...

    @property
    def reply_to(self) -> str | None: ...

    @property
    def routing_key(self) -> str:
        """The routing key it was first published with (a delayed copy keeps it)."""

    @property
    def deliveries(self) -> int:
        """How many times this message was delivered before this delivery, its
        delayed copies included; 0 the first time."""

    async def ack(self) -> None:
        """Done with: the broker forgets it."""

    async def dead_letter(self, error: DomainError) -> None:
        """To the dead-letter exchange with `error` as the reason, then acked."""

    async def retry_later(self, delay_s: float) -> None:
        """A copy back on its queue after about `delay_s`, counted as delivered once
        more; then this delivery acked."""

    async def start_over(self, delay_s: float, headers: Mapping[str, Any]) -> None:
        """A fresh copy back on its queue after about `delay_s`, its deliveries
        counted from 0 again and `headers` added; then this delivery acked."""

    async def release(self) -> None:
        """Back on its queue at once, unsettled: the way out when settling it failed.
        Does nothing once it is settled."""


Handler = Callable[[Delivery], Awaitable[None]]


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Take no more deliveries; those in hand are still to be settled."""


class Broker(Publisher, Protocol):
    """Publishing, and consuming queues with manual settling."""

    async def consume(self, queue: str, handle: Handler) -> Subscription:
        """Hand each delivery from `queue` to `handle`, in a task of its own."""

    async def queue_depth(self, queue: str) -> int:
        """How many messages wait in `queue`, ready to be delivered."""


# How much of a dead letter's body a reader is shown.
DEAD_LETTER_BODY_SHOWN = 64 * 1024


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered message as an operator sees it."""

    at: datetime
    """When it was dead-lettered (UTC, to the second, as AMQP keeps time): the time the
    service stamped on it, or the broker's when the broker dead-lettered it, else when
    it was read."""
    routing_key: str
    """The routing key it was first published with."""
    reason_code: int | None
    """The service's reason code (`x-redemption-reason-code`); None when the broker
    dead-lettered it."""
    reason: str | None
    """Why: the service's "<reasonCode> <reasonName>: <message>", or what the broker
    says (`delivery_limit`, `rejected`, `expired`, ...) when it dead-lettered it."""
    message_id: str | None
    body: bytes
    """The first `DEAD_LETTER_BODY_SHOWN` bytes of its body."""
    size: int
    """Its whole body's length in bytes."""


class DeadLetterLog(Protocol):
    """The dead letters, read without taking them off the dead-letter queue."""

    async def dead_letters(self, since: datetime, limit: int) -> list[DeadLetter]:
        """The newest `limit` dead letters recorded at or after `since` (timezone-aware,
        counted from its whole second), newest first."""
