"""What a fulfillment attempt came to, recorded; and the redemption ended when it is over.

Used by workers (handler answers, polls, timers) and by the intake
(`ProcessAsynchronousResponse`). Every write is conditional on the code still
being on the same redemption and attempt, so a late or repeated answer never
changes a later attempt, and two workers racing on one timer cannot both win.

A code whose redemption is over but not yet ended keeps a timer (the end of a
lease): if the process ending it dies, a worker's timer loop ends it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import timedelta

from shared.clock import Clock
from shared.domain import attempts, fulfillment, model
from shared.domain.access import Grant
from shared.domain.fulfillment import AsyncResponse, Result
from shared.domain.model import Campaign, Claim, Code, CodeRef, NewId, Redemption
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.ports import Store
from shared.service import measures
from shared.service.failure_budget import FailureBudget

R = ReasonCode


def claim_of(code: Code) -> Claim:
    """The claim a code is held under (for transitions of its current redemption)."""
    return Claim(code.redemption_id or "", code.redeemed_by_user_id or "")


class AttemptOutcomes:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        new_id: NewId,
        budget: FailureBudget,
        *,
        lease_s: float,
        unit: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._budget = budget
        self._clock = clock
        self._new_id = new_id
        self._lease_s = lease_s
        self._unit = unit

    async def record(
        self,
        campaign: Campaign,
        ref: CodeRef,
        code: Code,
        answer: Result,
        *,
        timed_out: bool = False,
    ) -> Code | None:
        """Apply `answer` to the code's current attempt.

        Returns the code as changed, or None if the attempt is no longer
        current (another answer, a timeout or an operator came first).
        """
        now, claim = self._clock(), claim_of(code)
        if answer.success and not answer.complete:
            return await self._store.update_attempt(
                ref,
                redemption_id=claim.redemption_id,
                attempt=code.attempt,
                state=CodeState.IN_PROGRESS,
                fields=attempts.waiting(campaign, code, answer, now),
            )
        conclude_by = {"timer_at": now + timedelta(seconds=self._lease_s)}
        if answer.success:
            fields = attempts.succeeded(answer) | conclude_by
            change = model.succeed(
                claim,
                answer.custom_redemption_info,
                now=now,
                new_id=self._new_id,
                attempt_fields=fields,
            )
        else:
            fields = attempts.failed(campaign, code, answer, now, self._unit(), timed_out=timed_out)
            if fields["retry_at"] is None:
                fields |= conclude_by
            change = model.fail(
                claim,
                answer.error_code or "",
                answer.error_msg or "",
                now=now,
                new_id=self._new_id,
                attempt_fields=fields,
            )
        return await self._store.apply(
            ref, [change], redemption_id=claim.redemption_id, attempt=code.attempt
        )

    async def retry(self, campaign: Campaign, ref: CodeRef, code: Code) -> Code | None:
        """Start the next attempt of a failed code whose retry is due; None if it moved on."""
        now = self._clock()
        if code.retry_at is None:
            return None
        change = model.retry(
            claim_of(code),
            code.attempt + 1,
            attempts.started(campaign, now, self._lease_s),
            scheduled=code.retry_at,
            now=now,
            new_id=self._new_id,
        )
        return await self._store.apply(
            ref, [change], redemption_id=code.redemption_id, attempt=code.attempt
        )

    async def conclude(
        self, ref: CodeRef, code: Code, redemption: Redemption | None = None
    ) -> Redemption | None:
        """End the redemption holding `code`, whose last attempt is over; idempotent.

        `redemption`, when the caller has it, saves reading it again.
        """
        rid = code.redemption_id or ""
        ended = redemption or await self._store.get_redemption(rid)
        if ref.is_shared:  # also when the redemption ended: a copy may have taken it again
            refund = code.code_state is not CodeState.REDEEMED
            await self._store.release_slot(ref.code_type, rid, refund=refund)
        status, reason, message = fulfillment.outcome_of(code)
        if ended is not None and model.records(ended, dataclasses.replace(ended, status=status)):
            now = self._clock()
            ended = await self._store.finish_redemption(
                dataclasses.replace(
                    ended,
                    status=status,
                    reason_code=reason,
                    message=message,
                    code=code,
                    code_type=code.code_type,
                    attempt=code.attempt,
                    updated_at=now,
                    completed_at=now if status.is_terminal else None,
                )
            )
            measures.ended(ended, completed_now=ended.completed_at == now)
            await self._budget.settle(ended)
        if code.timer_at is not None:
            await self._store.update_attempt(
                ref,
                redemption_id=rid,
                attempt=code.attempt,
                state=code.code_state,
                fields={"timer_at": None},
            )
        return ended

    async def respond(self, reply: AsyncResponse, grant: Grant) -> Code:
        """`ProcessAsynchronousResponse` from a caller whose key has `grant`, checked
        against the current attempt and state.

        Refused, with nothing changed: 40759 the code not named (before anything is
        looked at), 40762 unknown redemption, 90403 a campaign or handler out of
        the key's reach, 40767 campaign not asynchronous, 40759 the identifiers
        are not the redemption's, 40758 not in progress, 40760 not the current
        attempt, 40768 past the deadline, 40761 a malformed `asyncResponse`. The
        same answer again, for an attempt it ended, is accepted and changes nothing.
        """
        reply.check_names_code()
        redemption = await self._store.get_redemption(reply.redemption_id)
        if redemption is None:
            raise DomainError(R.REDEMPTION_CODE_BY_ID_NOT_FOUND, "no such redemption")
        campaign = await self._campaign_of(redemption)
        grant.check_answer(campaign)
        if not campaign.is_async:
            raise DomainError(
                R.REDEMPTION_CODE_TYPE_NOT_ASYNC, f"campaign {campaign.code_type} is not async"
            )
        user = redemption.user_id if campaign.is_shared else None
        ref = CodeRef(campaign.code_type, redemption.key, user)
        code = await self._store.get_code(ref)
        if code is None or code.redemption_id != reply.redemption_id:
            raise DomainError(R.REDEMPTION_CODE_NOT_IN_PROGRESS, "the redemption holds no code")
        reply.check_identity(code)
        if _already_recorded(code, reply):  # a repeat of the answer that ended this attempt
            if attempts.is_over(code):
                await self.conclude(ref, code)
            return code
        answer = self._checked(campaign, code, reply)
        recorded = await self.record(campaign, ref, code, answer)
        if recorded is None:
            raise DomainError(R.REDEMPTION_CODE_NOT_IN_PROGRESS, "the attempt ended meanwhile")
        if attempts.is_over(recorded):
            await self.conclude(ref, recorded)
        return recorded

    async def _campaign_of(self, redemption: Redemption) -> Campaign:
        """The campaign of the code a redemption claimed (its `codeType` may have been left out)."""
        code_type = redemption.code_type or (redemption.code and redemption.code.code_type)
        if not code_type:
            key = redemption.key
            shared = await self._store.find_shared_campaign(key)
            held = [
                code.code_type
                for code in await self._store.find_codes(key, limit=16)
                if code.redemption_id == redemption.redemption_id
            ]
            code_type = shared.code_type if shared is not None else next(iter(held), None)
        campaign = await self._store.get_campaign(code_type) if code_type else None
        if campaign is None:
            raise DomainError(R.REDEMPTION_CODE_NOT_IN_PROGRESS, "the redemption holds no code")
        return campaign

    def _checked(self, campaign: Campaign, code: Code, reply: AsyncResponse) -> Result:
        if code.code_state is not CodeState.IN_PROGRESS:
            raise DomainError(
                R.REDEMPTION_CODE_NOT_IN_PROGRESS, f"the code is {code.code_state.value}"
            )
        if reply.attempt != code.attempt:
            raise DomainError(
                R.REDEMPTION_CODE_ATTEMPT_MISMATCH,
                f"the current attempt is {code.attempt}, not {reply.attempt}",
            )
        if code.deadline_at is not None and self._clock() >= code.deadline_at:
            raise DomainError(
                R.REDEMPTION_CODE_ASYNC_PROCESSING_TIMEOUT,
                "the attempt ran past the campaign's allowed processing time",
            )
        answer = fulfillment.interpret(reply.response, is_async=True)
        if answer.error_code == fulfillment.BAD_RESPONSE:
            raise DomainError(R.REDEMPTION_CODE_ASYNC_BAD_RESPONSE, answer.error_msg or "")
        return answer


def _already_recorded(code: Code, reply: AsyncResponse) -> bool:
    if code.code_state is CodeState.IN_PROGRESS or code.attempt != reply.attempt:
        return False
    answer = fulfillment.interpret(reply.response, is_async=True)
    return code.response == answer.as_response()
