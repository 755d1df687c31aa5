"""MongoDB encodings more than one aggregate uses: the domain's conditions as query
documents, the projection hiding the outbox, and update-pipeline expressions."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any, assert_never

from shared.adapters.documents import Doc, camel
from shared.domain.conditions import (
    Condition,
    CountBelow,
    Differs,
    Equals,
    LowerBound,
    OneOf,
    UpperBound,
)
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


def query_of(conditions: Iterable[Condition]) -> Doc:
    """The query document for the records `conditions` hold for, each attribute under
    its camelCase key (a record's `_id` is named by the caller)."""
    clauses = [_clause(condition) for condition in conditions]
    return {"$and": clauses} if clauses else {}


def _clause(condition: Condition) -> Doc:
    match condition:
        case Equals(field, value):
            return {camel(field): _bson(value)}
        case Differs(field, value):
            return {camel(field): {"$ne": _bson(value)}}
        case OneOf(field, values):
            return {camel(field): {"$in": [_bson(value) for value in values]}}
        case LowerBound(field, at):
            return {"$or": [{camel(field): None}, {camel(field): {"$lte": at}}]}
        case UpperBound(field, at):
            return {"$or": [{camel(field): None}, {camel(field): {"$gt": at}}]}
        case CountBelow(count, limit):
            below = {"$expr": {"$lt": [f"${camel(count)}", f"${camel(limit)}"]}}
            return {"$or": [{camel(limit): None}, below]}
        case _:
            assert_never(condition)


def _bson(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value
