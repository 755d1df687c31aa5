"""The domain's aggregates in one namespace: campaigns, codes and their transitions,
redemptions and jobs. Each lives in its own module; this one only gathers them.

Pure: no I/O. Every operation returns the `Change` a store must apply
atomically, together with the event it records; nothing here sends anything.
"""

from shared.domain.campaigns import (
    DEFAULT_POLL_INTERVAL_S,
    TRANSPORTS,
    Campaign,
    CampaignFilter,
    CodeUseType,
    slot_refusal,
)
from shared.domain.codes import (
    NEW_CODE_STATES,
    AttemptState,
    Change,
    Claim,
    Code,
    CodeEvent,
    CodeRef,
    HistoryEntry,
    applied,
    check_version,
    expected,
    instance_of,
    new_code,
    on_attempt,
    refusal,
    reset_fields,
)
from shared.domain.jobs import Job, JobState
from shared.domain.redemptions import (
    GIVEN_UP,
    OUTCOME_FIELDS,
    Redemption,
    RedemptionStatus,
    ReplyTo,
    records,
    with_outcome,
)
from shared.domain.transitions import activate, claim, fail, invalidate, reset, retry, succeed
from shared.domain.types import JsonMap, NewId

__all__ = [
    "DEFAULT_POLL_INTERVAL_S",
    "GIVEN_UP",
    "NEW_CODE_STATES",
    "OUTCOME_FIELDS",
    "TRANSPORTS",
    "AttemptState",
    "Campaign",
    "CampaignFilter",
    "Change",
    "Claim",
    "Code",
    "CodeEvent",
    "CodeRef",
    "CodeUseType",
    "HistoryEntry",
    "Job",
    "JobState",
    "JsonMap",
    "NewId",
    "Redemption",
    "RedemptionStatus",
    "ReplyTo",
    "activate",
    "applied",
    "check_version",
    "claim",
    "expected",
    "fail",
    "instance_of",
    "invalidate",
    "new_code",
    "on_attempt",
    "records",
    "refusal",
    "reset",
    "reset_fields",
    "retry",
    "slot_refusal",
    "succeed",
    "with_outcome",
]
