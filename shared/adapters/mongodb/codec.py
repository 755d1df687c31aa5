"""MongoDB encodings more than one aggregate uses: the projection hiding the
outbox, and update-pipeline expressions."""

from __future__ import annotations

from typing import Any

from shared.adapters.documents import Doc
from shared.domain.model import RedemptionStatus

HIDDEN = {"outbox": 0}
TERMINAL = [s.value for s in RedemptionStatus if s.is_terminal]

REPLY_PENDING = {
    "$and": [
        {"$in": ["$status", TERMINAL]},
        {"$gt": [{"$size": {"$ifNull": ["$replies", []]}}, 0]},
    ]
}


def append(array: str, item: Any) -> Doc:
    return {"$concatArrays": [{"$ifNull": [f"${array}", []]}, [item]]}


def outbox_pending() -> Doc:
    """The stage keeping the outbox's size, and when its oldest event occurred (the
    relay takes the outboxes that waited longest first)."""
    return {
        "$set": {
            "outboxPending": {"$size": {"$ifNull": ["$outbox", []]}},
            "outboxSince": {
                "$let": {
                    "vars": {"oldest": {"$arrayElemAt": ["$outbox", 0]}},
                    "in": "$$oldest.occurredAt",
                }
            },
        }
    }
