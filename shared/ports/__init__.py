"""The ports the services depend on, one per aggregate, and the broker's; adapters
implement them.

A store adapter implements them all (`Store`); a service asks for the ports it
uses, so that what it touches shows in its signature.
"""

from typing import Protocol

from shared.ports.attempts import Attempts, Due, Timers
from shared.ports.broker import Broker, Delivery, Handler, Publisher, Subscription, Unroutable
from shared.ports.campaigns import Campaigns
from shared.ports.claims import SharedClaims
from shared.ports.codes import Codes
from shared.ports.fulfillment import FulfillmentHandler
from shared.ports.jobs import Jobs
from shared.ports.outbox import Backlog, Outbox, PendingEvent, PendingEvents
from shared.ports.profiles import Profiles
from shared.ports.redemptions import Redemptions
from shared.ports.throttling import FailureWindows


class Store(
    Campaigns,
    Codes,
    Attempts,
    SharedClaims,
    Redemptions,
    Outbox,
    Jobs,
    FailureWindows,
    Profiles,
    Protocol,
):
    """Every aggregate's port, in one database."""

    async def prepare(self) -> None:
        """Create what the store needs (indexes, tables); idempotent."""

    async def close(self) -> None: ...

    async def ping(self) -> None: ...


__all__ = [
    "Attempts",
    "Backlog",
    "Broker",
    "Campaigns",
    "Codes",
    "Delivery",
    "Due",
    "FailureWindows",
    "FulfillmentHandler",
    "Handler",
    "Jobs",
    "Outbox",
    "PendingEvent",
    "PendingEvents",
    "Profiles",
    "Publisher",
    "Redemptions",
    "SharedClaims",
    "Store",
    "Subscription",
    "Timers",
    "Unroutable",
]
