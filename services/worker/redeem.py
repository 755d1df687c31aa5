"""RedeemCode, carried out: claim a code atomically, fulfil, record the outcome.

Idempotent per redemption id: a repeated or redelivered job finds its
redemption (and, once claimed, its code) and resumes where the last delivery
stopped; it never claims twice.

Fulfillment that does not end in the first call (an asynchronous handler, a
retry after a failure) goes on under the code's timers (`services.worker.timers`).

A personal code is claimed by one conditional update of the code. A shared
code is claimed in three idempotent steps, each keyed by the redemption:
the user's one claim of the campaign, a slot of the campaign's
`maxRedemptions`, and the user's instance, created with its events.

A redemption that names a campaign hashing its codes, and every redemption that
names no campaign (when this service can hash), is recorded masked, with the
code's hashed key (`model.kept`): whether a code exists shows nowhere in the
record, and nothing is looked up before the failure budget is reserved. The
code as typed comes with every delivery of the job and is looked up by its
keys; one found in a campaign that keeps codes plain is keyed as it is there
(`_keyed`) before the redemption may hold it. A guess that names no campaign escapes
none of the campaign its code is found in: it is told its refusal uniformly when that
campaign says so, counts in that campaign's failure window, and costs the store what
an unknown code's refusal does (`_refuse_as_seen`).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import structlog

from services.worker.fulfil import Fulfiller
from shared.clock import Clock
from shared.domain import attempts, model
from shared.domain.codekeys import PLAIN, CodeKeys
from shared.domain.model import (
    AttemptState,
    Campaign,
    Code,
    CodeRef,
    NewId,
    Redemption,
    RedemptionStatus,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import checked, normalise
from shared.domain.states import CodeState
from shared.domain.throttling import LockedOut, counts
from shared.ports import Store
from shared.runtime.failpoints import failpoint
from shared.service import measures
from shared.service.attempt_outcomes import AttemptOutcomes
from shared.service.campaign_cache import CampaignCache
from shared.service.failure_budget import FailureBudget

log = structlog.get_logger()


class RedeemService:
    def __init__(
        self,
        store: Store,
        campaigns: CampaignCache,
        fulfiller: Fulfiller,
        outcomes: AttemptOutcomes,
        budget: FailureBudget,
        clock: Clock,
        new_id: NewId,
        *,
        lease_s: float,
        uniform_refusals: bool = False,
        keys: CodeKeys = PLAIN,
    ) -> None:
        self._keys = keys
        self._store = store
        self._budget = budget
        self._uniform_refusals = uniform_refusals
        self._campaigns = campaigns
        self._fulfiller = fulfiller
        self._outcomes = outcomes
        self._clock = clock
        self._new_id = new_id
        self._lease_s = lease_s

    async def redeem(self, pending: Redemption) -> Redemption:
        """Carry out `pending` to a terminal state, or resume it if known."""
        typed = pending.scan_code
        pending = await self._as_kept(pending)
        existing = await self._store.open_redemption(pending)
        if existing is not None:
            for reply in set(pending.replies) - set(existing.replies):
                await self._store.add_reply(existing.redemption_id, reply)
            if existing.status.is_terminal:
                return await self._as_ended(existing)
            pending = existing
        locked = await self._reserve(pending)
        if locked is not None and existing is None:
            return await self._finish(
                pending, RedemptionStatus.REJECTED, locked.reason, locked.message
            )
        found: Campaign | None = None
        try:
            found, seen = await self._campaign_for(pending, typed)
            campaign = found
            self._refuse_as_seen(campaign, seen, pending)
            pending = await self._keyed(pending, campaign, typed)
            ref, code, fresh = await self._claim(campaign, pending, typed)
        except DomainError as refusal:
            return await self._refuse(pending, found, refusal)
        if fresh:
            await failpoint("after-claim")
        if not fresh and code.code_state is CodeState.IN_PROGRESS and code.timer_at is None:
            code = await self._wake(ref, code)
        if code.code_state is CodeState.IN_PROGRESS and code.attempt_state is AttemptState.STARTING:
            ended = await self._store.get_redemption(pending.redemption_id)
            if ended is not None and ended.status.is_terminal:
                return await self._given_up_meanwhile(ref, ended)
            # Not called yet, also when this is a redelivery: the first to record the
            # call makes it (see `Fulfiller.attempt`); one called already is left to
            # its timer, so no attempt is called twice.
            code = await self._fulfiller.attempt(campaign, ref, code, "redeem")
        if attempts.is_over(code):
            ended = await self._outcomes.conclude(ref, code, pending)
            if ended is not None:
                return ended
        return await self._finish(
            pending, RedemptionStatus.IN_PROGRESS, None, None, code=code, code_type=ref.code_type
        )

    async def _as_kept(self, pending: Redemption) -> Redemption:
        """`pending` as its record keeps it: masked, with its code's hashed key, when the
        campaign it names hashes codes or when it names none (and this service can hash),
        whether or not any code has that key: the record tells a guesser nothing."""
        if pending.code_type is None:
            hashed = self._keys.can_hash
        else:
            try:
                hashed = (await self._campaigns.get(pending.code_type)).hash_codes
            except DomainError:
                hashed = False  # no such campaign: refused as given
        return model.kept(pending, self._keys) if hashed else pending

    async def _keyed(self, pending: Redemption, campaign: Campaign, typed: str) -> Redemption:
        """`pending`, its record keyed as its code is in `campaign`, before it may hold it:
        a redemption that named no campaign was opened under the hashed key, and whoever
        finds its code by the record (an async response, a give-up) needs the real one."""
        key = self._keys.of(campaign, typed)
        if pending.code_key is None or pending.code_key == key:
            return pending
        await self._store.key_redemption(pending.redemption_id, key)
        return dataclasses.replace(pending, code_key=key)

    async def _reserve(self, pending: Redemption) -> LockedOut | None:
        """A place in the caller's failure windows, taken before the code is looked at
        (by each delivery until the redemption ends: the first to take it keeps it);
        the refusal when they have none. A redemption already under way goes on even
        then: it may hold a code, which a lockout must not take from it."""
        try:
            await self._budget.reserve(pending.redemption_id, pending.caller)
        except LockedOut as refusal:
            return refusal
        return None

    async def _refuse(
        self, pending: Redemption, found: Campaign | None, refusal: DomainError
    ) -> Redemption:
        """End `pending` refused, told as `_refuses_uniformly` says; `found`: the campaign
        its code was looked for in, if one was found. A guess that named no campaign
        counts in the window of the campaign its code was found in too, as though it had
        named it; after its outcome is recorded, so that the answer does not wait for it."""
        uniform = self._refuses_uniformly(pending, found)
        ended = await self._finish(
            dataclasses.replace(pending, uniform_refusal=uniform),
            RedemptionStatus.REJECTED,
            refusal.reason,
            refusal.message,
        )
        if pending.code_type is None and found is not None and counts(ended.reason_code):
            await self._budget.count_in_campaign(ended.redemption_id, found)
        return ended

    def _refuses_uniformly(self, pending: Redemption, found: Campaign | None) -> bool:
        """Whether the caller is told a guess's refusal as the uniform one. A request that
        names a campaign is told as it says, else as the global default. One that names
        none is told so when the global default or the campaign its code was found in
        says so: naming no campaign does not escape a campaign's uniform refusals, and
        an unknown code's refusal is the uniform one anyway, so nothing tells a code of
        such a campaign from one that does not exist."""
        setting = found.uniform_refusals if found is not None else None
        if pending.code_type is None:
            return self._uniform_refusals or setting is True
        return self._uniform_refusals if setting is None else setting

    async def give_up(self, pending: Redemption, error: DomainError) -> Redemption:
        """End a redemption that cannot be carried out, failing any code it holds.

        A code it already redeemed stays redeemed, and so does the redemption.
        """
        pending = await self._as_kept(pending)
        existing = await self._store.open_redemption(pending)
        if existing is not None and existing.status.is_terminal:
            return await self._as_ended(existing)
        if existing is not None:  # as recorded: keyed as the code it found, if it found one
            pending = dataclasses.replace(
                pending, scan_code=existing.scan_code, code_key=existing.code_key
            )
        outcome = await self._let_go_all(pending, error)
        await failpoint("in-give-up")
        if outcome is not None:
            return await self._finish(
                pending,
                RedemptionStatus.REDEEMED,
                None,
                None,
                code=outcome,
                code_type=outcome.code_type,
            )
        ended = await self._finish(pending, RedemptionStatus.FAILED, error.reason, error.message)
        # Another copy of this job may have claimed a code meanwhile: its attempt is
        # stopped too (and one not called yet never will be: see `redeem`).
        late = await self._let_go_all(pending, error)
        if late is not None and ended.status is not RedemptionStatus.REDEEMED:
            log.warning("a copy of the job redeemed a code as it was given up", code=late.scan_code)
            return await self._redeemed(pending, late)
        return ended

    async def _as_ended(self, ended: Redemption) -> Redemption:
        """A terminal redemption as it stands; one given up is Redeemed after all when a
        copy of its job redeemed a code for it as it was given up (and died before it
        could say so): see `model.records`."""
        if not ended.given_up:
            return ended
        for ref in await self._refs_held(ended):
            code = await self._store.get_code(ref)
            held = code is not None and code.redemption_id == ended.redemption_id
            if held and code is not None and code.code_state is CodeState.REDEEMED:
                return await self._redeemed(ended, code)
        return ended

    async def _redeemed(self, pending: Redemption, code: Code) -> Redemption:
        return await self._finish(
            pending, RedemptionStatus.REDEEMED, None, None, code=code, code_type=code.code_type
        )

    async def _let_go_all(self, pending: Redemption, error: DomainError) -> Code | None:
        """Stop the attempts of every code `pending` holds and give back what it took;
        the code it redeemed already, if any."""
        redeemed = None
        for ref in await self._refs_held(pending):
            ours = await self._let_go(ref, pending, error)
            if ours is not None and ours.code_state is CodeState.REDEEMED:
                redeemed = ours
        return redeemed

    async def _let_go(self, ref: CodeRef, pending: Redemption, error: DomainError) -> Code | None:
        """`_stop_attempts`, then a shared code's slot (unless redeemed) and user claim."""
        ours = await self._stop_attempts(ref, pending, error)
        if ref.is_shared:
            rid = pending.redemption_id
            if ours is None:
                ours = await self._close_instance(ref, pending, error)
            redeemed = ours is not None and ours.code_state is CodeState.REDEEMED
            await self._store.release_slot(ref.code_type, rid, refund=not redeemed)
            if ours is None:
                await self._store.release_user(ref.code_type, pending.user_id, rid)
        return ours

    async def _close_instance(
        self, ref: CodeRef, pending: Redemption, error: DomainError
    ) -> Code | None:
        """The user's instance of a shared code for a redemption given up that holds the
        user's claim but has no instance yet, created Failed: a copy of its job that took
        the slot may be about to create it, and the slot is given back only once no copy
        can. If a copy created it first, its attempts are stopped. None when the
        redemption does not hold the user's claim (so it holds no slot either)."""
        holder = await self._store.user_holder(ref.code_type, pending.user_id)
        if holder != pending.redemption_id:
            return None
        campaign = await self._campaigns.get(ref.code_type)
        now = self._clock()
        closed = [
            model.claim(pending.claim, now=now, new_id=self._new_id),
            model.fail(
                pending.claim, error.reason.name, error.message, now=now, new_id=self._new_id
            ),
        ]
        instance = model.instance_of(campaign, pending.claim, now)
        await self._store.add_instance(instance, closed)  # unless a copy's is there
        return await self._stop_attempts(ref, pending, error)

    async def _given_up_meanwhile(self, ref: CodeRef, ended: Redemption) -> Redemption:
        """Another copy of this job gave the redemption up after this one claimed its
        code: the attempt is stopped before anything is called."""
        reason = ended.reason_code or ReasonCode.DELIVERY_LIMIT_EXCEEDED
        await self._let_go(ref, ended, DomainError(reason, ended.message or "given up"))
        return ended

    async def _wake(self, ref: CodeRef, code: Code) -> Code:
        """Give a code claimed without timers (before they existed) one, due now."""
        woken = await self._store.update_attempt(
            ref,
            redemption_id=code.redemption_id or "",
            attempt=code.attempt,
            state=CodeState.IN_PROGRESS,
            fields={"timer_at": self._clock()},
        )
        return woken or code

    async def _stop_attempts(
        self, ref: CodeRef, pending: Redemption, error: DomainError
    ) -> Code | None:
        """The code `pending` holds at `ref`, with no attempt running or due any more:
        a running attempt failed, a due retry cancelled. None if it holds none.

        Each write expects the code as just read; when a poll, a response or a
        timer changed it meanwhile, it is read again, so the outcome is the
        code's real last state (an attempt that succeeded meanwhile stays so).
        """
        rid = pending.redemption_id
        # Should this process die before the redemption is finished, the timer concludes it.
        conclude_by = self._clock() + timedelta(seconds=self._lease_s)
        while True:
            held = await self._store.get_code(ref)
            if held is None or held.redemption_id != rid:
                return None
            if held.code_state is CodeState.FAILED and held.retry_at is not None:
                stopped = await self._store.update_attempt(
                    ref,
                    state=CodeState.FAILED,
                    fields={"retry_at": None, "timer_at": conclude_by},
                    redemption_id=rid,
                    attempt=held.attempt,
                )
            elif held.code_state is CodeState.IN_PROGRESS:
                change = model.fail(
                    pending.claim,
                    error.reason.name,
                    error.message,
                    now=self._clock(),
                    new_id=self._new_id,
                    attempt_fields={
                        "deadline_at": None,
                        "next_poll_at": None,
                        "timer_at": conclude_by,
                    },
                )
                stopped = await self._store.apply(
                    ref, [change], redemption_id=rid, attempt=held.attempt
                )
            else:
                return held
            if stopped is not None:
                return stopped

    async def _refs_held(self, pending: Redemption) -> list[CodeRef]:
        """Where the codes `pending` may hold are, by the key its record names."""
        key = pending.key
        refs = [
            CodeRef(code.code_type, key)
            for code in await self._store.find_codes(key, limit=16)
            if code.redemption_id == pending.redemption_id
        ]
        shared = await self._store.find_shared_campaign(key)
        if shared is not None:
            refs.append(CodeRef(shared.code_type, key, pending.user_id))
        return refs

    async def _claim(
        self, campaign: Campaign, pending: Redemption, typed: str
    ) -> tuple[CodeRef, Code, bool]:
        """Where the code this redemption holds in `campaign` is, the code, and whether
        this call claimed it; `typed`: its code as the caller typed it."""
        scan_norm = checked(typed)
        if campaign.is_shared:
            return await self._claim_shared(campaign, scan_norm, pending)
        ref = CodeRef(campaign.code_type, self._keys.of(campaign, typed))
        if campaign.hash_codes and pending.code_key != ref.key:
            # Recorded before its campaign had the code: it has none for this redemption.
            raise DomainError(ReasonCode.REDEMPTION_CODE_NOT_FOUND, "no such code")
        try:
            campaign.check_redeemable(self._clock())
        except DomainError:
            # A redelivered job resumes the code it holds, whatever the campaign says now.
            held = await self._store.get_code(ref)
            if held is None or held.redemption_id != pending.redemption_id:
                raise
            return ref, held, False
        code = await self._store.apply(ref, self._claim_changes(campaign, pending))
        if code is not None:
            return ref, code, True
        return ref, await self._held_by(pending, ref), False

    def _claim_changes(self, campaign: Campaign, pending: Redemption) -> list[model.Change]:
        now = self._clock()
        if campaign.handler is None:
            return [
                model.claim(pending.claim, now=now, new_id=self._new_id),
                model.succeed(pending.claim, None, now=now, new_id=self._new_id),
            ]
        first = attempts.started(campaign, now, self._lease_s)
        return [model.claim(pending.claim, now=now, new_id=self._new_id, attempt_fields=first)]

    async def _claim_shared(
        self, campaign: Campaign, scan_norm: str, pending: Redemption
    ) -> tuple[CodeRef, Code, bool]:
        if normalise(campaign.scan_code or "") != scan_norm:
            raise DomainError(
                ReasonCode.CODE_TYPE_SCAN_CODE_MISMATCH_FOR_MULTI_USE_CODE,
                f"{pending.scan_code} is not the scan code of campaign {campaign.code_type}",
            )
        ref = CodeRef(campaign.code_type, scan_norm, pending.user_id)
        rid, user = pending.redemption_id, pending.user_id
        holder = await self._store.reserve_user(campaign.code_type, user, rid)
        instance = await self._store.get_code(ref)
        if holder != rid:
            if instance is None:
                raise DomainError(
                    ReasonCode.REDEMPTION_IN_PROGRESS, "your redemption of this code is in progress"
                )
            raise model.refusal(instance, user)
        if instance is not None:
            return ref, instance, False
        now = self._clock()
        if not await self._store.take_slot(campaign.code_type, rid, now):
            await self._store.release_user(campaign.code_type, user, rid)
            current = await self._campaigns.fresh(campaign.code_type)
            raise model.slot_refusal(current, now)
        created = model.instance_of(campaign, pending.claim, now)
        code, fresh = await self._store.add_instance(
            created, self._claim_changes(campaign, pending)
        )
        return ref, code, fresh

    async def _campaign_for(self, pending: Redemption, typed: str) -> tuple[Campaign, Code | None]:
        """The campaign `pending` names, else the one its code `typed` is in, with the
        personal code as it was found there."""
        if pending.code_type is not None:
            return await self._campaigns.get(pending.code_type), None
        keys = self._keys.lookups(typed)
        shared = await self._store.find_shared_campaign(keys[0])
        codes = [code for key in keys for code in await self._store.find_codes(key, limit=2)]
        if len(codes) + (shared is not None) > 1:
            raise DomainError(
                ReasonCode.INVALID_PARAMETER_VALUE,
                "this scan code exists in several campaigns: give its codeType",
            )
        if shared is not None:
            return shared, None
        if not codes:
            raise DomainError(ReasonCode.REDEMPTION_CODE_NOT_FOUND, "no such code")
        return await self._campaigns.get(codes[0].code_type), codes[0]

    def _refuse_as_seen(self, campaign: Campaign, seen: Code | None, pending: Redemption) -> None:
        """Refuse, as it was found, a code that a redemption naming no campaign cannot
        claim (not Available, and not held by this redemption, which resumes it), with the
        campaign's own refusal first, as `_claim` gives it. Such a refusal then costs the
        store what an unknown code's does, the lookup and no more: no record keyed, no
        claim tried, no code read again (a key write among them would take measurably
        longer), so the time of a uniform refusal does not tell a guesser that the code
        exists. A code made Available after the lookup is refused as it was then, as
        though the request had come a moment earlier."""
        if seen is None or seen.code_state is CodeState.AVAILABLE:
            return
        if seen.redemption_id == pending.redemption_id:
            return
        campaign.check_redeemable(self._clock())
        raise model.refusal(seen, pending.user_id)

    async def _held_by(self, pending: Redemption, ref: CodeRef) -> Code:
        """The code this redemption holds already, or why it cannot have it."""
        code = await self._store.get_code(ref)
        if code is None:
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_NOT_FOUND, f"campaign {ref.code_type} has no such code"
            )
        if code.redemption_id != pending.redemption_id:
            raise model.refusal(code, pending.user_id)
        return code

    async def _finish(
        self,
        pending: Redemption,
        status: RedemptionStatus,
        reason: ReasonCode | None,
        message: str | None,
        *,
        code: Code | None = None,
        code_type: str | None = None,
    ) -> Redemption:
        now = self._clock()
        outcome = dataclasses.replace(
            pending,
            status=status,
            reason_code=reason,
            message=message,
            code=code,
            code_type=code_type or pending.code_type,
            attempt=code.attempt if code else 0,
            updated_at=now,
            completed_at=now if status.is_terminal else None,
        )
        ended = await self._store.finish_redemption(outcome)
        measures.ended(ended, completed_now=ended.completed_at == outcome.completed_at)
        await self._budget.settle(ended)
        return ended
