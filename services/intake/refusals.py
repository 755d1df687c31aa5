"""Every refusal as `{status, reasonCode, reasonName, message}`, over HTTP and AMQP alike."""

from __future__ import annotations

from shared.domain.reasons import ReasonCode
from shared.messages import ErrorBody

R = ReasonCode
_STATUS: dict[ReasonCode, int] = {
    R.REDEMPTION_CODE_NOT_FOUND: 404,
    R.REDEMPTION_CODE_TYPE_NOT_FOUND: 404,
    R.REDEMPTION_CODE_BY_ID_NOT_FOUND: 404,
    R.REDEMPTION_NOT_FOUND: 404,
    R.UNAUTHENTICATED: 401,
    R.FORBIDDEN: 403,
    R.SERVICE_UNAVAILABLE: 503,
    R.UNHANDLED: 500,
    R.GENERATED_CODES_GONE: 410,
    R.GENERATED_CODES_NOT_READY: 425,
    R.CODE_SECRET_MISSING: 501,
    R.REDEMPTION_CODE_MAX_FAILED_EXCEEDED_FOR_USER: 429,
    **{
        reason: 422
        for reason in (
            R.INVALID_SCAN_CODE,
            R.INVALID_PARAMETER_VALUE,
            R.INVALID_SCAN_CODE_FOR_TYPE,
            R.REDEMPTION_CODE_TYPE_MISMATCH,
            R.REDEMPTION_CODE_ASYNC_BAD_RESPONSE,
            R.REDEMPTION_CODE_TYPE_NOT_ASYNC,
            R.CODE_TYPE_SCAN_CODE_MISMATCH_FOR_MULTI_USE_CODE,
            R.REDEMPTION_CODE_TYPE_CODE_USE_ERROR,
            R.REDEMPTION_CODE_TYPE_MUST_BE_SINGLE_USE,
            R.INVALID_SCAN_CODE_LENGTH,
            R.INSECURE_WEBHOOK_URL,
        )
    },
}


def http_status(reason: ReasonCode) -> int:
    """404 not found, 422 bad input, 401/403 credentials, 429 locked out; any other refusal
    is a 409 conflict."""
    return _STATUS.get(reason, 409)


def refusal(reason: ReasonCode, message: str, status: int | None = None) -> ErrorBody:
    """The refusal's body; its status is the reason's unless one is given."""
    return ErrorBody(
        status=status or http_status(reason),
        reasonCode=int(reason),
        reasonName=reason.name,
        message=message,
    )
