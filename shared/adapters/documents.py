"""Campaigns, codes and redemptions as documents: the stored shape, shared by the stores.

Field names are the API's (camelCase), so that a document reads like the
record a caller sees.

A caller's free-form maps (`CALLER_MAPS`) are stored with their keys
escaped: `%`, `.`, `$` and NUL are percent-encoded (`%25`, `%2E`, `%24`,
`%00`) and the empty key is stored as `%`. MongoDB takes keys with a leading
`$` or a `.` in some operations only (and neither in a path), BSON takes no
NUL in a key, and the embedded store's JSON tags instants as `{"$date": ms}`;
escaped, any map the API accepts is an ordinary document for every operation
of both stores, and reads back unchanged. Ordinary keys are stored as they
are, so documents stay readable and queryable; the alternative, a map kept
as one JSON string, would hide every key from MongoDB's tools and indexes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared import tracing
from shared.clock import to_ms
from shared.domain.backoff import RetryPolicy
from shared.domain.model import (
    AttemptState,
    Campaign,
    Code,
    CodeEvent,
    CodeUseType,
    HistoryEntry,
    Job,
    JobState,
    Redemption,
    RedemptionStatus,
    ReplyTo,
)
from shared.domain.profiles import IdentityKind, Profile, Session
from shared.domain.reasons import ReasonCode
from shared.domain.scancode import normalise
from shared.domain.states import Action, CodeState
from shared.domain.throttling import Entry, FailureWindow, Limit
from shared.ports import PendingEvent

Doc = dict[str, Any]

# Attributes (of Code, Campaign, Job) holding a caller's free-form JSON.
CALLER_MAPS = frozenset(
    {"custom_code_info", "custom_redemption_info", "response", "algorithm_details"}
)
_KEY_OUT = str.maketrans({"%": "%25", ".": "%2E", "$": "%24", "\0": "%00"})
_KEY_IN = re.compile("%(25|2E|24|00)")
_EMPTY_KEY = "%"


def escaped(value: Any) -> Any:
    """A caller's JSON as stored: every key escaped, at any depth."""
    if isinstance(value, Mapping):
        return {(k.translate(_KEY_OUT) or _EMPTY_KEY): escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escaped(v) for v in value]
    return value


def unescaped(value: Any) -> Any:
    """A caller's JSON as it was given, from its stored form."""
    if isinstance(value, Mapping):
        return {_key_in(k): unescaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescaped(v) for v in value]
    if isinstance(value, datetime):
        # Only the embedded store's previous format gives one: a caller's
        # {"$date": ms}, written unescaped and read back as an instant.
        return {"$date": to_ms(value)}
    return value


def _key_in(key: str) -> str:
    if key == _EMPTY_KEY:
        return ""
    return _KEY_IN.sub(lambda m: chr(int(m[1], 16)), key) if "%" in key else key


def stored(name: str, value: Any) -> Any:
    """An attribute's value as a document holds it."""
    return escaped(value) if name in CALLER_MAPS and value is not None else value


def loaded(name: str, value: Any) -> Any:
    """An attribute's value from a document."""
    return unescaped(value) if name in CALLER_MAPS and value is not None else value


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _plain_fields(cls: type, *special: str) -> list[tuple[str, str]]:
    names = (f.name for f in dataclasses.fields(cls))
    return [(name, camel(name)) for name in names if name not in special]


CODE_FIELDS = _plain_fields(Code, "redemption_code_id", "code_state", "history", "key")
CAMPAIGN_FIELDS = _plain_fields(Campaign, "code_type", "code_use_type", "retry_backoff")


def code_from_doc(doc: Mapping[str, Any]) -> Code:
    fields = {name: loaded(name, doc[key]) for name, key in CODE_FIELDS if key in doc}
    if fields.get("attempt_state") is not None:
        fields["attempt_state"] = AttemptState(fields["attempt_state"])
    return Code(
        redemption_code_id=doc.get("redemptionCodeId") or doc["_id"],
        code_state=CodeState(doc["codeState"]),
        history=tuple(history_from_doc(h) for h in doc.get("history", ())),
        key=doc.get("scanNorm", ""),
        **fields,
    )


def code_to_doc(code: Code, *, outbox: list[Doc] | None = None) -> Doc:
    doc: Doc = {key: stored(name, getattr(code, name)) for name, key in CODE_FIELDS}
    doc.update(
        _id=code.redemption_code_id,
        codeState=code.code_state.value,
        scanNorm=code.key,
        history=[history_to_doc(h) for h in code.history],
    )
    if outbox:
        doc.update(outbox=outbox, outboxPending=len(outbox))
    return doc


def history_to_doc(entry: HistoryEntry) -> Doc:
    return {
        "at": entry.at,
        "action": entry.action.value,
        "from": entry.from_state.value if entry.from_state else None,
        "to": entry.to_state.value,
        "by": entry.by,
        "redemptionId": entry.redemption_id,
        "reason": entry.reason,
    }


def history_from_doc(doc: Mapping[str, Any]) -> HistoryEntry:
    return HistoryEntry(
        at=doc["at"],
        action=Action(doc["action"]),
        from_state=CodeState(doc["from"]) if doc.get("from") else None,
        to_state=CodeState(doc["to"]),
        by=doc["by"],
        redemption_id=doc.get("redemptionId"),
        reason=doc.get("reason"),
    )


def campaign_to_doc(campaign: Campaign) -> Doc:
    doc: Doc = {key: stored(name, getattr(campaign, name)) for name, key in CAMPAIGN_FIELDS}
    doc.update(
        _id=campaign.code_type,
        codeUseType=campaign.code_use_type.value,
        retryBackoff=dataclasses.asdict(campaign.retry_backoff),
    )
    if campaign.scan_code:
        doc["scanNorm"] = normalise(campaign.scan_code)
    return doc


def campaign_from_doc(doc: Mapping[str, Any]) -> Campaign:
    return Campaign(
        code_type=doc["_id"],
        code_use_type=CodeUseType(doc["codeUseType"]),
        retry_backoff=RetryPolicy(**doc.get("retryBackoff", {})),
        **{name: loaded(name, doc[key]) for name, key in CAMPAIGN_FIELDS if key in doc},
    )


def redemption_to_doc(r: Redemption) -> Doc:
    return {
        "_id": r.redemption_id,
        "requestId": r.request_id,
        "userId": r.user_id,
        "scanCode": r.scan_code,
        "codeType": r.code_type,
        "status": r.status.value,
        "customRedemptionInfo": stored("custom_redemption_info", r.custom_redemption_info),
        "reasonCode": int(r.reason_code) if r.reason_code else None,
        "message": r.message,
        "attempt": r.attempt,
        "acceptedAt": r.accepted_at,
        "updatedAt": r.updated_at,
        "completedAt": r.completed_at,
        "code": code_to_doc(r.code) | {"redemptionCodeId": r.code.redemption_code_id}
        if r.code
        else None,
        "replies": [{"queue": x.queue, "correlationId": x.correlation_id} for x in r.replies],
        "keyId": r.key_id,
        "clientAddress": r.client_address,
        "uniformRefusal": r.uniform_refusal,
        "codeKey": r.code_key,
    }


def redemption_from_doc(doc: Mapping[str, Any]) -> Redemption:
    code = doc.get("code")
    reason = doc.get("reasonCode")
    return Redemption(
        redemption_id=doc["_id"],
        request_id=doc["requestId"],
        user_id=doc["userId"],
        scan_code=doc["scanCode"],
        code_type=doc.get("codeType"),
        status=RedemptionStatus(doc["status"]),
        custom_redemption_info=loaded("custom_redemption_info", doc.get("customRedemptionInfo")),
        reason_code=ReasonCode(reason) if reason else None,
        message=doc.get("message"),
        attempt=doc.get("attempt", 0),
        accepted_at=doc["acceptedAt"],
        updated_at=doc["updatedAt"],
        completed_at=doc.get("completedAt"),
        code=code_from_doc(code) if code else None,
        replies=tuple(ReplyTo(x["queue"], x["correlationId"]) for x in doc.get("replies", ())),
        key_id=doc.get("keyId"),
        client_address=doc.get("clientAddress"),
        uniform_refusal=doc.get("uniformRefusal", False),
        code_key=doc.get("codeKey"),
    )


def event_to_doc(event: CodeEvent, code: Code) -> Doc:
    """An outbox entry: the event and the code as of it."""
    snapshot = code_to_doc(dataclasses.replace(code, history=()))
    snapshot["redemptionCodeId"] = snapshot.pop("_id")
    return envelope_to_doc(event) | {"code": snapshot}


def envelope_to_doc(event: CodeEvent) -> Doc:
    """An outbox entry without its code: what the event says (a store that takes the
    code as of the event inside its update adds it there)."""
    doc = {
        "eventId": event.event_id,
        "name": event.name,
        "occurredAt": event.occurred_at,
        "redemptionId": event.redemption_id,
        "userId": event.user_id,
    }
    if trace := tracing.carrier():
        doc["trace"] = trace
    if (accepted := tracing.ACCEPTED_AT.get()) is not None:
        doc["acceptedAt"] = accepted
    return doc


def pending_event_from_doc(doc: Mapping[str, Any]) -> PendingEvent:
    event = CodeEvent(
        event_id=doc["eventId"],
        name=doc["name"],
        occurred_at=doc["occurredAt"],
        redemption_id=doc.get("redemptionId"),
        user_id=doc.get("userId"),
    )
    trace = doc.get("trace")
    kept = {str(k): str(v) for k, v in trace.items()} if isinstance(trace, Mapping) else {}
    accepted = doc.get("acceptedAt")
    return PendingEvent(
        event,
        code_from_doc(doc["code"]),
        kept,
        accepted if isinstance(accepted, datetime) else None,
    )


_JOB_FIELDS = _plain_fields(Job, "job_id", "code_state", "state")


def job_to_doc(job: Job) -> Doc:
    doc: Doc = {key: stored(name, getattr(job, name)) for name, key in _JOB_FIELDS}
    doc.update(_id=job.job_id, codeState=job.code_state.value, state=job.state.value)
    return doc


def job_from_doc(doc: Mapping[str, Any]) -> Job:
    return Job(
        job_id=doc["_id"],
        code_state=CodeState(doc["codeState"]),
        state=JobState(doc["state"]),
        **{name: loaded(name, doc[key]) for name, key in _JOB_FIELDS if key in doc},
    )


def failure_window_to_doc(window: FailureWindow) -> Doc:
    return {
        "_id": window.scope,
        "limit": {
            "failures": window.limit.failures,
            "windowMs": round(window.limit.window.total_seconds() * 1000),
        },
        "entries": [{"id": e.attempt_id, "at": e.at} for e in window.entries],
        "expiresAt": window.expires_at,
        "version": window.version,
    }


def failure_window_from_doc(doc: Mapping[str, Any]) -> FailureWindow:
    limit = Limit(doc["limit"]["failures"], timedelta(milliseconds=doc["limit"]["windowMs"]))
    entries = tuple(Entry(e["id"], e["at"]) for e in doc.get("entries", ()))
    return FailureWindow(doc["_id"], limit, entries, doc.get("version", 0))


def profile_to_doc(profile: Profile) -> Doc:
    return {
        "_id": profile.profile_id,
        "appId": profile.app_id,
        "kind": profile.kind.value,
        "externalId": profile.external_id,
        "createdAt": profile.created_at,
        "secretHash": profile.secret_hash,
    }


def profile_from_doc(doc: Mapping[str, Any]) -> Profile:
    return Profile(
        profile_id=doc["_id"],
        app_id=doc["appId"],
        kind=IdentityKind(doc["kind"]),
        external_id=doc["externalId"],
        created_at=doc["createdAt"],
        secret_hash=doc.get("secretHash"),
    )


def session_to_doc(session: Session) -> Doc:
    return {
        "_id": session.session_id,
        "appId": session.app_id,
        "expiresAt": session.expires_at,
        "profileId": session.profile_id,
        "serverName": session.server_name,
        "lastPacketId": session.last_packet_id,
        "lastAnswer": session.last_answer,
    }


def session_from_doc(doc: Mapping[str, Any]) -> Session:
    return Session(
        session_id=doc["_id"],
        app_id=doc["appId"],
        expires_at=doc["expiresAt"],
        profile_id=doc.get("profileId"),
        server_name=doc.get("serverName"),
        last_packet_id=doc.get("lastPacketId"),
        last_answer=doc.get("lastAnswer"),
    )
