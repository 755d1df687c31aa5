"""The fulfillment handler contract of the design, section 4: data in, result out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.domain import jsonmaps
from shared.domain.instants import to_ms
from shared.domain.model import Campaign, Code, RedemptionStatus
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import normalise
from shared.domain.states import CodeState

# errorCode values the service itself records when a handler misbehaves.
HANDLER_MISSING = "HANDLER_NOT_FOUND"
HANDLER_CRASHED = "HANDLER_ERROR"
BAD_RESPONSE = "BAD_RESPONSE"
# A webhook answered 4xx: the partner refused the request.
WEBHOOK_REFUSED = "WEBHOOK_REFUSED"
# A webhook not called: its URL is not https (campaigns.check_webhook_url), or its host
# resolves to an address that is not allowed (addresses.AddressPolicy).
WEBHOOK_URL_REFUSED = "WEBHOOK_URL_REFUSED"
WEBHOOK_ADDRESS_REFUSED = "WEBHOOK_ADDRESS_REFUSED"
SERVICE_ERRORS = frozenset(
    {HANDLER_MISSING, HANDLER_CRASHED, BAD_RESPONSE, WEBHOOK_URL_REFUSED, WEBHOOK_ADDRESS_REFUSED}
)


def request_for(campaign: Campaign, code: Code, operation: str = "redeem") -> dict[str, Any]:
    """The data map a handler is called with."""
    return {
        "scanCode": code.scan_code,
        "operation": operation,
        "redemptionCodeId": code.redemption_code_id,
        "attempt": code.attempt,
        "async": campaign.is_async,
        "codeType": campaign.code_type,
        "codeUseType": campaign.code_use_type.value,
        "customCodeInfo": dict(code.custom_code_info or {}),
        "customRedemptionInfo": dict(code.custom_redemption_info or {}),
        "attemptedAt": to_ms(code.attempted_at),
        "redemptionId": code.redemption_id,
        "userId": code.redeemed_by_user_id,
    }


@dataclass(frozen=True)
class Result:
    """A handler's answer, checked."""

    success: bool
    complete: bool
    custom_redemption_info: Mapping[str, Any] | None = None
    error_code: str | None = None
    error_msg: str | None = None

    def as_response(self) -> dict[str, Any]:
        """The answer as recorded on the code (`response`)."""
        return {
            "success": self.success,
            "complete": self.complete,
            "customRedemptionInfo": _plain(self.custom_redemption_info),
            "errorCode": self.error_code,
            "errorMsg": self.error_msg,
        }


def interpret(answer: object, *, is_async: bool) -> Result:
    """Check a handler's answer; anything malformed is a failed attempt."""
    if not isinstance(answer, Mapping) or not isinstance(answer.get("success"), bool):
        return _bad("the handler's answer has no boolean 'success'")
    complete = answer.get("complete", True)
    info = answer.get("customRedemptionInfo")
    if not isinstance(complete, bool) or not (info is None or isinstance(info, Mapping)):
        return _bad("'complete' must be boolean and 'customRedemptionInfo' an object")
    if not complete and not is_async:
        return _bad("a synchronous handler answered complete: false")
    try:
        jsonmaps.checked(info)
    except ValueError as error:
        return _bad(f"'customRedemptionInfo' {error}")
    if answer["success"]:
        return Result(True, complete, info)
    return Result(
        False,
        True,
        info,
        str(answer.get("errorCode") or "FULFILLMENT_FAILED"),
        str(answer.get("errorMsg") or "the handler reported failure"),
    )


def _plain(info: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if info is None else dict(info)


def _bad(why: str) -> Result:
    return Result(False, True, None, BAD_RESPONSE, why)


def outcome_of(code: Code) -> tuple[RedemptionStatus, ReasonCode | None, str | None]:
    """A redemption's status, given the code it holds."""
    if code.code_state is CodeState.REDEEMED:
        return RedemptionStatus.REDEEMED, None, None
    if code.code_state is CodeState.FAILED and code.retry_at is None:
        reason = (
            ReasonCode.REDEMPTION_CODE_SCRIPT_FAILURE
            if code.error_code in SERVICE_ERRORS
            else ReasonCode.REDEMPTION_FAILED
        )
        return RedemptionStatus.FAILED, reason, f"{code.error_code}: {code.error_msg}"
    if code.code_state is CodeState.INVALIDATED:
        return RedemptionStatus.FAILED, ReasonCode.REDEMPTION_CODE_INVALID, "code was invalidated"
    return RedemptionStatus.IN_PROGRESS, None, None


@dataclass(frozen=True)
class AsyncResponse:
    """`ProcessAsynchronousResponse`: a partner's answer for one attempt."""

    redemption_id: str
    attempt: int
    response: object
    scan_code: str | None = None
    redemption_code_id: str | None = None
    code_type: str | None = None

    def check_names_code(self) -> None:
        """Refuse (40759) an answer that does not name its code by `redemptionCodeId`, the
        code's identity (`scanCode` and `codeType`, when given, must match too)."""
        if not self.redemption_code_id:
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_ATTEMPT_ERROR,
                "an async response must name its code: redemptionCodeId is missing",
            )

    def check_identity(self, code: Code) -> None:
        """Refuse (40759) an answer whose identifiers are not those of the code the
        redemption holds."""
        self.check_names_code()
        given = {
            "scanCode": self.scan_code and normalise(self.scan_code),
            "redemptionCodeId": self.redemption_code_id,
            "codeType": self.code_type,
        }
        actual = {
            "scanCode": normalise(code.scan_code),
            "redemptionCodeId": code.redemption_code_id,
            "codeType": code.code_type,
        }
        wrong = [key for key, value in given.items() if value is not None and value != actual[key]]
        if wrong:
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_ATTEMPT_ERROR,
                f"{', '.join(wrong)} do not match the redemption's code",
            )
