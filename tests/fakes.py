"""In-memory stand-ins for the ports, with the same atomic semantics (for unit tests)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.clock import to_ms, utcnow
from shared.domain import attempts, model
from shared.domain.conditions import holds
from shared.domain.model import (
    AttemptState,
    Campaign,
    CampaignFilter,
    Change,
    Code,
    CodeRef,
    Job,
    Redemption,
    ReplyTo,
)
from shared.domain.profiles import IdentityKind, Profile, Session
from shared.domain.scancode import normalise
from shared.domain.states import CodeState
from shared.domain.throttling import FailureWindow, Limit
from shared.ports import Backlog, Due, PendingEvent, PendingEvents, Store, Timers
from shared.ports.throttling import WindowChange


class FakeStore:
    def __init__(self) -> None:
        self.campaigns: dict[str, Campaign] = {}
        self.codes: dict[tuple[str, str], Code] = {}
        self.instances: dict[tuple[str, str], Code] = {}
        self.claims: dict[tuple[str, str], str] = {}
        self.slots: dict[str, set[str]] = {}
        self.jobs: dict[str, Job] = {}
        self.outbox: dict[str, list[PendingEvent]] = {}
        self.redemptions: dict[str, Redemption] = {}
        self.windows: dict[str, FailureWindow] = {}
        # code id -> (job id, plain code, expires at)
        self.plain: dict[str, tuple[str, str, datetime]] = {}
        self.profiles: dict[str, Profile] = {}
        self.sessions: dict[str, Session] = {}

    async def prepare(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def create_campaign(self, campaign: Campaign) -> None:
        if campaign.code_type in self.campaigns:
            raise model.code_type_taken(campaign.code_type)
        if campaign.scan_code and await self.find_shared_campaign(normalise(campaign.scan_code)):
            raise model.shared_scan_code_taken(campaign.scan_code)
        self.campaigns[campaign.code_type] = campaign

    async def get_campaign(self, code_type: str) -> Campaign | None:
        return self.campaigns.get(code_type)

    async def list_campaigns(
        self, where: CampaignFilter, *, skip: int, limit: int
    ) -> list[Campaign]:
        found = [self.campaigns[k] for k in sorted(self.campaigns)]
        return [c for c in found if where.matches(c)][skip : skip + limit]

    async def count_campaigns(self, where: CampaignFilter) -> int:
        return sum(1 for c in self.campaigns.values() if where.matches(c))

    async def update_campaign(
        self, code_type: str, version: int, fields: Mapping[str, Any], now: datetime
    ) -> Campaign | None:
        c = self.campaigns.get(code_type)
        if c is None or c.version != version:
            return None
        self.campaigns[code_type] = dataclasses.replace(
            c, **fields, version=version + 1, updated_at=now
        )
        return self.campaigns[code_type]

    async def add_code(self, code: Code) -> None:
        key = (code.code_type, code.key)
        if key in self.codes:
            raise model.scan_code_taken(code.code_type, code.scan_code)
        self.codes[key] = code

    async def find_shared_campaign(self, scan_norm: str) -> Campaign | None:
        shared = (c for c in self.campaigns.values() if c.scan_code)
        return next((c for c in shared if normalise(c.scan_code or "") == scan_norm), None)

    def _table(self, ref: CodeRef) -> tuple[dict[tuple[str, str], Code], tuple[str, str]]:
        if ref.user_id is not None:
            return self.instances, (ref.code_type, ref.user_id)
        return self.codes, (ref.code_type, ref.key)

    async def get_code(self, ref: CodeRef) -> Code | None:
        table, key = self._table(ref)
        return table.get(key)

    async def find_codes(self, key: str, *, limit: int) -> list[Code]:
        return [c for (_, k), c in self.codes.items() if k == key][:limit]

    async def apply(
        self,
        ref: CodeRef,
        changes: Sequence[Change],
        *,
        redemption_id: str | None = None,
        version: int | None = None,
        attempt: int | None = None,
    ) -> Code | None:
        table, key = self._table(ref)
        code = table.get(key)
        if code is None or not model.expected(code, changes, redemption_id, version, attempt):
            return None
        table[key] = self._with_events(code, changes)
        return table[key]

    async def update_attempt(
        self,
        ref: CodeRef,
        *,
        redemption_id: str,
        attempt: int,
        state: CodeState,
        fields: Mapping[str, Any],
        attempt_state: AttemptState | None = None,
    ) -> Code | None:
        table, key = self._table(ref)
        code = table.get(key)
        if code is None or not model.on_attempt(code, redemption_id, attempt, state, attempt_state):
            return None
        table[key] = dataclasses.replace(code, **fields)
        return table[key]

    async def timers(self, now: datetime) -> Timers:
        set_ = [c.timer_at for t in (self.codes, self.instances) for c in t.values() if c.timer_at]
        return Timers(len(set_), sum(at <= now for at in set_))

    async def take_due(self, now: datetime, lease_s: float, *, limit: int) -> list[Due]:
        due = [
            (code.timer_at, shared, key, code)
            for shared, table in ((False, self.codes), (True, self.instances))
            for key, code in table.items()
            if code.timer_at is not None and code.timer_at <= now
        ]
        taken = []
        for _, shared, key, code in sorted(due, key=lambda item: item[0])[:limit]:
            table = self.instances if shared else self.codes
            table[key] = dataclasses.replace(code, timer_at=attempts.lease(code, now, lease_s))
            user = code.redeemed_by_user_id if shared else None
            taken.append(Due(CodeRef(code.code_type, code.key, user), code))
        return taken

    def _with_events(self, code: Code, changes: Sequence[Change]) -> Code:
        for change in changes:
            code = model.applied(code, change)
            snapshot = dataclasses.replace(code, history=())
            self.outbox.setdefault(code.redemption_code_id, []).append(
                PendingEvent(change.event, snapshot)
            )
        return code

    async def reserve_user(self, code_type: str, user_id: str, redemption_id: str) -> str:
        return self.claims.setdefault((code_type, user_id), redemption_id)

    async def release_user(self, code_type: str, user_id: str, redemption_id: str) -> None:
        if self.claims.get((code_type, user_id)) == redemption_id:
            del self.claims[(code_type, user_id)]

    async def user_holder(self, code_type: str, user_id: str) -> str | None:
        return self.claims.get((code_type, user_id))

    async def take_slot(self, code_type: str, redemption_id: str, now: datetime) -> bool:
        held = self.slots.setdefault(code_type, set())
        if redemption_id in held:
            return True
        c = self.campaigns.get(code_type)
        if c is None or not holds(model.slot_open(now), c):
            return False
        held.add(redemption_id)
        self.campaigns[code_type] = dataclasses.replace(c, redemption_count=c.redemption_count + 1)
        return True

    async def release_slot(self, code_type: str, redemption_id: str, *, refund: bool) -> None:
        held = self.slots.get(code_type, set())
        if redemption_id in held:
            held.discard(redemption_id)
            c = self.campaigns[code_type]
            count = c.redemption_count - int(refund)
            self.campaigns[code_type] = dataclasses.replace(c, redemption_count=count)

    async def add_instance(self, instance: Code, changes: Sequence[Change]) -> tuple[Code, bool]:
        key = (instance.code_type, changes[0].event.user_id or "")
        if key in self.instances:
            return self.instances[key], False
        self.instances[key] = self._with_events(instance, changes)
        return self.instances[key], True

    async def set_custom_code_info(
        self, code_type: str, key: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code | None:
        code = self.codes.get((code_type, key))
        if code is None or code.version != version:
            return None
        code = dataclasses.replace(
            code, custom_code_info=dict(info), version=version + 1, updated_at=utcnow()
        )
        self.codes[(code_type, key)] = code
        return code

    async def redeemed_codes(self, user_id: str, code_type: str | None) -> list[Code]:
        found = [
            c
            for c in [*self.codes.values(), *self.instances.values()]
            if c.redeemed_by_user_id == user_id
            and c.code_state is CodeState.REDEEMED
            and code_type in (None, c.code_type)
        ]
        return sorted(found, key=lambda code: code.redeemed_at or code.updated_at)

    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        added = []
        for code in codes:
            key = (code.code_type, code.key)
            added.append(key not in self.codes)
            self.codes.setdefault(key, code)
        return added

    async def codes_of(
        self, code_type: str, *, job_id: str | None = None, batch: int = 1000
    ) -> AsyncIterator[list[Code]]:
        found = sorted(
            (
                c
                for c in self.codes.values()
                if (c.job_id == job_id if job_id else c.code_type == code_type)
            ),
            key=lambda c: c.redemption_code_id,
        )
        for start in range(0, len(found), batch):
            yield found[start : start + batch]

    async def count_job_codes(self, job_id: str) -> int:
        return sum(1 for c in self.codes.values() if c.job_id == job_id)

    async def create_job(self, job: Job) -> None:
        self.jobs[job.job_id] = job

    async def get_job(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    async def update_job(self, job: Job) -> None:
        self.jobs[job.job_id] = job

    async def hand_out_job(self, job_id: str, now: datetime) -> Job | None:
        job = self.jobs.get(job_id)
        if job is None or job.handed_out_at is not None:
            return None
        self.jobs[job_id] = dataclasses.replace(job, handed_out_at=now, updated_at=now)
        return self.jobs[job_id]

    async def purge_plain_codes(self, now: datetime) -> int:
        gone = [code_id for code_id, (_, _, until) in self.plain.items() if until <= now]
        for code_id in gone:
            del self.plain[code_id]
        return len(gone)

    async def keep_plain_codes(
        self, job_id: str, codes: Mapping[str, str], until: datetime
    ) -> None:
        for code_id, scan in codes.items():
            self.plain.setdefault(code_id, (job_id, scan, until))

    async def plain_codes(self, code_ids: Sequence[str], now: datetime) -> dict[str, str]:
        kept = ((i, self.plain.get(i)) for i in code_ids)
        return {i: entry[1] for i, entry in kept if entry is not None and entry[2] > now}

    async def drop_plain_codes(self, job_id: str, now: datetime) -> None:
        for code_id, (job, _, until) in list(self.plain.items()):
            if job == job_id or until <= now:
                del self.plain[code_id]

    async def inventory(self, code_type: str, *, shared: bool) -> dict[CodeState, int]:
        table = self.instances if shared else self.codes
        counts = dict.fromkeys(CodeState, 0)
        for (kind, _), code in table.items():
            if kind == code_type:
                counts[code.code_state] += 1
        return counts

    async def delete_codes(self, code_type: str) -> int:
        deletable = model.deletable()
        gone = [k for k, c in self.codes.items() if k[0] == code_type and holds(deletable, c)]
        for key in gone:
            del self.codes[key]
        return len(gone)

    async def reset_codes(
        self, code_type: str, to: CodeState, reset_id: str, by: str, now: datetime
    ) -> int:
        resettable = model.resettable()
        keys = [k for k, c in self.codes.items() if k[0] == code_type and holds(resettable, c)]
        for key in keys:
            code = self.codes[key]
            change = model.reset(
                code, to, now=now, by=by, event_id=f"{reset_id}:{code.redemption_code_id}"
            )
            self.codes[key] = self._with_events(code, [change])
        return len(keys)

    async def recent_redemptions(
        self, code_type: str | None, *, limit: int, after: model.Place | None
    ) -> list[Redemption]:
        def place(r: Redemption) -> tuple[int, str]:  # kept to the millisecond, as stored
            return to_ms(r.accepted_at), r.redemption_id

        found = sorted(
            (r for r in self.redemptions.values() if code_type in (None, r.code_type)),
            key=place,
            reverse=True,
        )
        if after is not None:
            at = to_ms(after.accepted_at)
            found = [
                r
                for r in found
                if place(r)[0] < at
                or (after.redemption_id is not None and place(r) < (at, after.redemption_id))
            ]
        return found[:limit]

    async def open_redemption(self, redemption: Redemption) -> Redemption | None:
        existing = self.redemptions.get(redemption.redemption_id)
        if existing is None:
            self.redemptions[redemption.redemption_id] = redemption
        return existing

    async def add_reply(self, redemption_id: str, reply: ReplyTo) -> None:
        r = self.redemptions.get(redemption_id)
        if r is not None:
            self.redemptions[redemption_id] = dataclasses.replace(r, replies=(*r.replies, reply))

    async def key_redemption(self, redemption_id: str, key: str) -> None:
        r = self.redemptions.get(redemption_id)
        if r is not None:
            self.redemptions[redemption_id] = dataclasses.replace(r, code_key=key)

    async def finish_redemption(self, redemption: Redemption) -> Redemption:
        stored = self.redemptions.get(redemption.redemption_id)
        if stored is None:
            raise LookupError(f"redemption {redemption.redemption_id} was never opened")
        if not model.records(stored, redemption):
            return stored
        finished = model.with_outcome(stored, redemption)
        self.redemptions[redemption.redemption_id] = finished
        return finished

    async def get_redemption(self, redemption_id: str) -> Redemption | None:
        return self.redemptions.get(redemption_id)

    async def pending_events(self, *, limit: int) -> list[PendingEvents]:
        # In the order codes' first pending events were written: an emptied outbox is dropped.
        items = [PendingEvents(k, tuple(v)) for k, v in self.outbox.items()]
        return items[:limit]

    async def mark_relayed(self, relayed: Sequence[PendingEvents]) -> None:
        for item in relayed:
            sent = {p.event.event_id for p in item.events}
            left = [p for p in self.outbox.get(item.code_id, []) if p.event.event_id not in sent]
            if left:
                self.outbox[item.code_id] = left
            else:
                self.outbox.pop(item.code_id, None)

    async def backlog(self) -> Backlog:
        events = [p.event for pending in self.outbox.values() for p in pending]
        return Backlog(len(events), min((e.occurred_at for e in events), default=None))

    async def pending_replies(self, *, limit: int) -> list[Redemption]:
        return [r for r in self.redemptions.values() if r.status.is_terminal and r.replies][:limit]

    async def mark_replied(self, replied: Sequence[Redemption]) -> None:
        for r in replied:
            sent = set(r.replies)
            stored = self.redemptions.get(r.redemption_id)
            if stored is None:
                continue
            remaining = tuple(x for x in stored.replies if x not in sent)
            self.redemptions[r.redemption_id] = dataclasses.replace(stored, replies=remaining)

    async def failure_windows(self, scopes: Sequence[str]) -> list[FailureWindow]:
        return [self.windows[s] for s in scopes if s in self.windows]

    async def change_failure_window(
        self, scope: str, limit: Limit, change: WindowChange
    ) -> FailureWindow:
        changed = change(self.windows.get(scope, FailureWindow(scope, limit)))
        if changed.entries:
            self.windows[scope] = changed
        else:
            self.windows.pop(scope, None)
        return changed

    async def clear_failure_window(self, scope: str) -> bool:
        return self.windows.pop(scope, None) is not None

    async def live_failure_windows(
        self, now: datetime, *, after: str | None = None, limit: int = 100
    ) -> list[FailureWindow]:
        live = [
            w
            for scope, w in sorted(self.windows.items())
            if scope > (after or "") and w.expires_at is not None and w.expires_at > now
        ]
        return live[:limit]

    async def add_profile(self, profile: Profile) -> Profile:
        found = await self.find_profile(profile.app_id, profile.kind, profile.external_id)
        if found is not None:
            return found
        if profile.profile_id in self.profiles:
            raise ValueError(f"profile id {profile.profile_id!r} is taken by another identity")
        self.profiles[profile.profile_id] = profile
        return profile

    async def find_profile(
        self, app_id: str, kind: IdentityKind, external_id: str
    ) -> Profile | None:
        identity = (app_id, kind, external_id)
        found = (p for p in self.profiles.values() if (p.app_id, p.kind, p.external_id) == identity)
        return next(found, None)

    async def get_profile(self, profile_id: str) -> Profile | None:
        return self.profiles.get(profile_id)

    async def open_session(self, session: Session) -> None:
        if session.session_id in self.sessions:
            raise ValueError(f"session id {session.session_id!r} is taken")
        self.sessions[session.session_id] = session

    async def get_session(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    async def keep_session(
        self, session_id: str, expires_at: datetime, packet_id: int, answer: str
    ) -> None:
        session = self.sessions.get(session_id)
        if session is None:
            return
        kept = dataclasses.replace(session, expires_at=max(session.expires_at, expires_at))
        if session.last_packet_id is None or session.last_packet_id <= packet_id:
            kept = dataclasses.replace(kept, last_packet_id=packet_id, last_answer=answer)
        self.sessions[session_id] = kept

    async def purge_sessions(self, now: datetime) -> int:
        gone = [s for s, session in self.sessions.items() if session.expires_at <= now]
        for session_id in gone:
            del self.sessions[session_id]
        return len(gone)

    def events(self) -> list[str]:
        return [p.event.routing_key for pending in self.outbox.values() for p in pending]


class GatedStore(FakeStore):
    """The fake store, whose first claim waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.claiming = asyncio.Event()
        self.gate = asyncio.Event()

    async def apply(self, ref: CodeRef, changes: Sequence[Change], **expect: Any) -> Code | None:
        if not self.claiming.is_set() and changes[0].source is CodeState.AVAILABLE:
            self.claiming.set()
            await self.gate.wait()
        return await super().apply(ref, changes, **expect)


def _typecheck(store: FakeStore) -> Store:
    return store  # mypy keeps the fake in step with the port
