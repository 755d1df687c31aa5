"""A fulfillment partner's behaviour, simulated: delay, failures, silence.

Stateless and deterministic per attempt: whether an attempt fails or stays
silent is drawn from a hash of (redemptionCodeId, attempt), and an
asynchronous outcome is ready `delay_s` after the attempt started
(`attemptedAt` in the request). So every poll of one attempt, in any process,
gets the same story. A code's `customCodeInfo.simulate` overrides the
partner's defaults: `delayS`, `fail` (bool), `failAttempts` (attempts before
the first success), `silent` (never answer), `httpStatus` (webhook: answer
with this status instead; `httpStatusTries`: only to the first n tries of an
attempt) and `slowTries` (webhook: let the first n tries of an attempt hang).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

WAIT: Mapping[str, Any] = {"success": True, "complete": False}


@dataclass(frozen=True)
class Behaviour:
    delay_s: float = 0.0
    failure_rate: float = 0.0
    silence_rate: float = 0.0


@dataclass(frozen=True)
class Plan:
    """What this partner does with one attempt."""

    delay_s: float
    fail: bool
    silent: bool
    http_status: int | None = None
    http_status_tries: int | None = None
    slow_tries: int = 0


def _draw(request: Mapping[str, Any], salt: str) -> float:
    key = f"{request.get('redemptionCodeId')}:{request.get('attempt')}:{salt}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


def plan(request: Mapping[str, Any], defaults: Behaviour) -> Plan:
    rules = (request.get("customCodeInfo") or {}).get("simulate") or {}
    attempt = int(request.get("attempt") or 0)
    fail = _draw(request, "fail") < defaults.failure_rate
    if "fail" in rules:
        fail = bool(rules["fail"])
    if "failAttempts" in rules:
        fail = attempt < int(rules["failAttempts"])
    silent = bool(rules.get("silent", _draw(request, "silence") < defaults.silence_rate))
    status = rules.get("httpStatus")
    return Plan(
        delay_s=float(rules.get("delayS", defaults.delay_s)),
        fail=fail,
        silent=silent,
        http_status=int(status) if status is not None else None,
        http_status_tries=int(rules["httpStatusTries"]) if "httpStatusTries" in rules else None,
        slow_tries=int(rules.get("slowTries", 0)),
    )


def outcome(request: Mapping[str, Any], chosen: Plan) -> Mapping[str, Any]:
    """The complete answer for the attempt."""
    if chosen.fail:
        return {
            "success": False,
            "complete": True,
            "errorCode": "SIMULATED_FAILURE",
            "errorMsg": f"the simulated partner refused attempt {request.get('attempt')}",
        }
    info = dict(request.get("customRedemptionInfo") or {})
    info.update(partner="simulated", attempt=request.get("attempt"))
    return {"success": True, "complete": True, "customRedemptionInfo": info}


def async_answer(request: Mapping[str, Any], chosen: Plan, now_ms: int) -> Mapping[str, Any]:
    """An asynchronous partner's answer now: not yet, or the outcome once its delay passed."""
    started = int(request.get("attemptedAt") or now_ms)
    if now_ms - started < chosen.delay_s * 1000:
        return WAIT
    return outcome(request, chosen)
