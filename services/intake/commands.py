"""Commands from other services, on `redemption.commands`: `redeem` and `async-response`.

Ack policy: a `redeem` is acked once its job is confirmed on the work queue;
an `async-response` once it is recorded or refused (the refusal, with its
reason code, goes to its `reply_to`, if any, as does the code recorded). A
malformed command is dead-lettered with the reason (and the reason is sent to
its `reply_to`); a publish or store write that fails is requeued after a
pause, and at `max_deliveries` dead-lettered with the reason (told to its
`reply_to` too).
"""

from __future__ import annotations

import structlog
from aio_pika.abc import AbstractIncomingMessage

from services.intake.redemptions import job_for, submit
from services.intake.refusals import http_status, refusal
from shared import topology
from shared.adapters.rabbitmq import Broker, Consumer, delivery_count
from shared.clock import Clock
from shared.domain.reasons import DomainError, ReasonCode
from shared.fulfillment.outcomes import Outcomes
from shared.messages import AsyncResponseCommand, CodeRecord, RedeemCommand, parse

log = structlog.get_logger()


class CommandConsumer(Consumer):
    def __init__(
        self, broker: Broker, attempts: Outcomes, clock: Clock, *, max_deliveries: int
    ) -> None:
        super().__init__(broker, topology.INTAKE_QUEUE)
        self._attempts = attempts
        self._clock = clock
        self._max_deliveries = max_deliveries

    async def handle(self, message: AbstractIncomingMessage) -> None:
        deliveries = delivery_count(message)
        if deliveries >= self._max_deliveries:
            error = DomainError(
                ReasonCode.DELIVERY_LIMIT_EXCEEDED,
                f"could not be carried out in {deliveries} deliveries",
            )
            await self._refuse(message, error, http_status(error.reason))
        elif message.routing_key == topology.ASYNC_RESPONSE_ROUTING_KEY:
            await self._async_response(message)
        else:
            await self._redeem(message)

    async def _async_response(self, message: AbstractIncomingMessage) -> None:
        try:
            command = parse(AsyncResponseCommand, message.body)
        except DomainError as error:
            log.warning("dead-lettering a bad async-response", reason=error.message)
            await self._refuse(message, error)
            return
        try:
            code = await self._attempts.respond(command.for_redemption(command.redemption_id))
        except DomainError as refused:
            log.info("async-response refused", reason=refused.reason.name, why=refused.message)
            await self._reply(message, _error_body(refused))
            await self.settle(message, message.ack())
            return
        except Exception:
            log.exception("could not record the async-response; requeueing")
            await self.retry_later(message)
            return
        await self._reply(message, CodeRecord.of(code).model_dump_json().encode())
        await self.settle(message, message.ack())

    async def _redeem(self, message: AbstractIncomingMessage) -> None:
        try:
            command = parse(RedeemCommand, message.body)
            job = job_for(
                command,
                clock=self._clock,
                reply_to=message.reply_to,
                correlation_id=message.correlation_id,
            )
        except DomainError as error:
            log.warning("dead-lettering a bad command", reason=error.message)
            await self._refuse(message, error)
            return
        try:
            await submit(self._broker, job, via="amqp")
        except Exception:
            log.exception("could not publish the job; requeueing")
            await self.retry_later(message)
            return
        await self.settle(message, message.ack())

    async def _refuse(
        self, message: AbstractIncomingMessage, error: DomainError, status: int = 422
    ) -> None:
        await self._reply(message, _error_body(error, status))
        await self.settle(message, self._broker.dead_letter(message, error))

    async def _reply(self, message: AbstractIncomingMessage, body: bytes) -> None:
        if not message.reply_to:
            return
        try:
            await self._broker.publish(
                "", message.reply_to, body, correlation_id=message.correlation_id
            )
        except Exception:
            log.info("could not answer the sender", exc_info=True)


def _error_body(error: DomainError, status: int | None = None) -> bytes:
    return refusal(error.reason, error.message, status).model_dump_json().encode()
