"""Conditions on a record's attributes, as data: a rule over stored records (which
campaigns a listing shows, which give a slot, which codes an operator may delete)
is stated here once, every store translates it into its own query, and `holds`
evaluates it in memory.

Each condition names attributes of a domain record (`Campaign`, `Code`); a store
maps them to where it keeps them. An unset attribute is None.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Equals:
    """`field` is `value` (None: the field is unset)."""

    field: str
    value: Any

    def holds(self, record: object) -> bool:
        return bool(getattr(record, self.field) == self.value)


@dataclass(frozen=True)
class Differs:
    """`field` is not `value` (an unset field differs from any value but None)."""

    field: str
    value: Any

    def holds(self, record: object) -> bool:
        return bool(getattr(record, self.field) != self.value)


@dataclass(frozen=True)
class OneOf:
    """`field` is one of `values`."""

    field: str
    values: tuple[Any, ...]

    def holds(self, record: object) -> bool:
        return getattr(record, self.field) in self.values


@dataclass(frozen=True)
class LowerBound:
    """`field` is an optional, inclusive lower bound of `at` (a start): unset, or at or
    before `at`."""

    field: str
    at: datetime

    def holds(self, record: object) -> bool:
        bound: datetime | None = getattr(record, self.field)
        return bound is None or bound <= self.at


@dataclass(frozen=True)
class UpperBound:
    """`field` is an optional, exclusive upper bound of `at` (an end): unset, or after
    `at`."""

    field: str
    at: datetime

    def holds(self, record: object) -> bool:
        bound: datetime | None = getattr(record, self.field)
        return bound is None or self.at < bound


@dataclass(frozen=True)
class CountBelow:
    """The number in `count` is below the optional limit in `limit`: no limit is set,
    or the count is less than it."""

    count: str
    limit: str

    def holds(self, record: object) -> bool:
        limit: int | None = getattr(record, self.limit)
        return limit is None or bool(getattr(record, self.count) < limit)


Condition = Equals | Differs | OneOf | LowerBound | UpperBound | CountBelow
Conditions = tuple[Condition, ...]


def holds(conditions: Iterable[Condition], record: object) -> bool:
    """Whether `record` meets every one of `conditions` (none: any record does)."""
    return all(condition.holds(record) for condition in conditions)
