"""Commands from other services, on `redemption.commands`: `redeem` and `async-response`.

Ack policy: a `redeem` is acked once its job is confirmed on the work queue, or
once refused because its caller is locked out or its key does not admit it (the
refusal goes to its `reply_to`);
an `async-response` once it is recorded or refused (the refusal, with its
reason code, goes to its `reply_to`, if any, as does the code recorded). A
malformed command is dead-lettered with the reason (and the reason is sent to
its `reply_to`); a publish or store write that fails is retried later through
a delay queue, the delay growing with its deliveries, and at `max_deliveries`
dead-lettered with the reason (told to its `reply_to` too). Anything else that
fails in handling a command dead-letters it with 90500 (UNHANDLED): no command is
left unsettled.

Keys: a command names its API key in an `authorization` header (`Bearer <key>`),
as over HTTP. An `async-response` needs a key holding `fulfillment`, and answers
only attempts within its reach. A `redeem` without a key is trusted as its broker
user is; with one, it is admitted as over HTTP (the `redeem` role, its campaigns)
and counted against the key's failure budget.
"""

from __future__ import annotations

import structlog
from opentelemetry.trace import SpanKind

from services.intake.auth import Admitted, admit_message, key_id_of, names_key
from services.intake.redemptions import NameRedemption, caller_of, job_for, submit
from services.intake.refusals import http_status, refusal
from shared import topology, tracing
from shared.clock import Clock
from shared.domain.access import UNLIMITED, ApiKeys
from shared.domain.backoff import RetryPolicy
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.throttling import LockedOut
from shared.entrypoints.consumer import Consumer
from shared.messages import AsyncResponseCommand, CodeRecord, RedeemCommand, parse
from shared.ports import Broker, Delivery
from shared.service.attempt_outcomes import AttemptOutcomes
from shared.service.failure_budget import FailureBudget

log = structlog.get_logger()


class CommandConsumer(Consumer):
    def __init__(
        self,
        broker: Broker,
        attempts: AttemptOutcomes,
        budget: FailureBudget,
        clock: Clock,
        keys: ApiKeys,
        ids: NameRedemption,
        *,
        max_deliveries: int,
        retry: RetryPolicy = topology.BROKER_RETRY,
    ) -> None:
        super().__init__(broker, topology.INTAKE_QUEUE, retry=retry)
        self._keys = keys
        self._ids = ids
        self._attempts = attempts
        self._budget = budget
        self._clock = clock
        self._max_deliveries = max_deliveries

    async def handle(self, delivery: Delivery) -> None:
        # Every path below settles as its last step, so whatever escapes one escaped
        # before its settling: the message is dead-lettered, never left holding a slot.
        try:
            with tracing.TRACER.start_as_current_span(
                f"command {delivery.routing_key}",
                context=tracing.continued(delivery.headers),
                kind=SpanKind.CONSUMER,
            ):
                await self._handle(delivery)
        except Exception as exc:
            log.exception("dead-lettering a command that could not be handled")
            error = DomainError(ReasonCode.UNHANDLED, f"could not be handled: {type(exc).__name__}")
            await self._refuse(delivery, error, http_status(error.reason))

    async def _handle(self, delivery: Delivery) -> None:
        deliveries = delivery.deliveries
        if deliveries >= self._max_deliveries:
            error = DomainError(
                ReasonCode.DELIVERY_LIMIT_EXCEEDED,
                f"could not be carried out in {deliveries} deliveries",
            )
            await self._refuse(delivery, error, http_status(error.reason))
        elif delivery.routing_key == topology.ASYNC_RESPONSE_ROUTING_KEY:
            await self._async_response(delivery)
        else:
            await self._redeem(delivery)

    async def _async_response(self, delivery: Delivery) -> None:
        try:
            command = parse(AsyncResponseCommand, delivery.body)
        except DomainError as error:
            log.warning("dead-lettering a bad async-response", reason=error.message)
            await self._refuse(delivery, error)
            return
        try:
            sender = admit_message(self._keys, delivery.headers, "fulfillment")
        except DomainError as refused:
            await self._turn_down(delivery, refused, "async-response")
            return
        try:
            answer = command.for_redemption(command.redemption_id)
            code = await self._attempts.respond(answer, sender.grant)
        except DomainError as refused:
            await self._turn_down(delivery, refused, "async-response")
            return
        except Exception:
            log.exception("could not record the async-response; retrying later")
            await self.retry_later(delivery)
            return
        await self._reply(delivery, CodeRecord.of(code).model_dump_json().encode())
        await self.settle(delivery, delivery.ack())

    async def _redeem(self, delivery: Delivery) -> None:
        try:
            command = parse(RedeemCommand, delivery.body)
        except DomainError as error:
            log.warning("dead-lettering a bad command", reason=error.message)
            await self._refuse(delivery, error)
            return
        try:
            sender = self._redeemer(delivery)
            (sender.grant if sender else UNLIMITED).check_campaign(command.code_type)
        except DomainError as refused:
            await self._turn_down(delivery, refused, "redeem")
            return
        try:
            job = job_for(
                command,
                clock=self._clock,
                ids=self._ids,
                reply_to=delivery.reply_to,
                correlation_id=delivery.correlation_id,
                key_id=key_id_of(sender.who) if sender else None,
            )
        except DomainError as error:
            log.warning("dead-lettering a bad command", reason=error.message)
            await self._refuse(delivery, error)
            return
        try:
            await self._budget.check(caller_of(job))
        except LockedOut as locked:  # refused, not malformed: answered, not dead-lettered
            await self._reply(delivery, _error_body(locked))
            await self.settle(delivery, delivery.ack())
            return
        except Exception:
            log.exception("could not read the failure budget; retrying later")
            await self.retry_later(delivery)
            return
        try:
            await submit(self._broker, job, via="amqp")
        except Exception:
            log.exception("could not publish the job; retrying later")
            await self.retry_later(delivery)
            return
        await self.settle(delivery, delivery.ack())

    def _redeemer(self, delivery: Delivery) -> Admitted | None:
        """The sender of a `redeem`, admitted by its key; None when it names none."""
        if not names_key(delivery.headers):
            return None
        return admit_message(self._keys, delivery.headers, "redeem")

    async def _turn_down(self, delivery: Delivery, refused: DomainError, what: str) -> None:
        """Refused, not malformed: answered and acked, not dead-lettered."""
        log.info(f"{what} refused", reason=refused.reason.name, why=refused.message)
        await self._reply(delivery, _error_body(refused))
        await self.settle(delivery, delivery.ack())

    async def _refuse(self, delivery: Delivery, error: DomainError, status: int = 422) -> None:
        await self._reply(delivery, _error_body(error, status))
        await self.settle(delivery, delivery.dead_letter(error))

    async def _reply(self, delivery: Delivery, body: bytes) -> None:
        if not delivery.reply_to:
            return
        try:
            await self._broker.publish(
                "", delivery.reply_to, body, correlation_id=delivery.correlation_id
            )
        except Exception:
            log.info("could not answer the sender", exc_info=True)


def _error_body(error: DomainError, status: int | None = None) -> bytes:
    return refusal(error.reason, error.message, status).model_dump_json().encode()
