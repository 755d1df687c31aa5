"""`redeem` commands from other services, on `redemption.commands`.

Ack policy: a command is acked once its job is confirmed on the work queue.
A malformed command is dead-lettered with the reason (and the reason is
sent to its `reply_to`, if any); a publish that fails is requeued after a
pause, and dead-lettered by the broker's delivery limit if it never succeeds.
"""

from __future__ import annotations

import asyncio

import structlog
from aio_pika.abc import AbstractIncomingMessage

from services.intake.redemptions import job_for, submit
from shared import topology
from shared.adapters.rabbitmq import Broker, Consumer, delivery_count
from shared.clock import Clock
from shared.domain.reasons import DomainError
from shared.messages import ErrorBody, RedeemCommand, parse

log = structlog.get_logger()


class CommandConsumer(Consumer):
    def __init__(self, broker: Broker, clock: Clock) -> None:
        super().__init__(broker, topology.INTAKE_QUEUE)
        self._clock = clock

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            command = parse(RedeemCommand, message.body)
            job = job_for(
                user_id=command.userId,
                scan_code=command.scanCode,
                code_type=command.codeType,
                custom_redemption_info=command.customRedemptionInfo,
                request_id=command.requestId,
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
            await asyncio.sleep(min(0.5 * 2 ** delivery_count(message), 10.0))
            await message.nack(requeue=True)
            return
        await message.ack()

    async def _refuse(self, message: AbstractIncomingMessage, error: DomainError) -> None:
        if message.reply_to:
            body = ErrorBody(
                status=422,
                reasonCode=int(error.reason),
                reasonName=error.reason.name,
                message=error.message,
            )
            try:
                await self._broker.publish(
                    "",
                    message.reply_to,
                    body.model_dump_json().encode(),
                    correlation_id=message.correlation_id,
                )
            except Exception:
                log.info("could not tell the sender why", exc_info=True)
        await self._broker.dead_letter(message, error)
