"""In-process fulfillment handlers, found by name through Python entry points."""

from __future__ import annotations

from importlib.metadata import entry_points

from shared.ports import FulfillmentHandler

ENTRY_POINT_GROUP = "redemption.handlers"


def load_handlers() -> dict[str, FulfillmentHandler]:
    """Every handler installed under the `redemption.handlers` entry-point group."""
    return {ep.name: ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)}
