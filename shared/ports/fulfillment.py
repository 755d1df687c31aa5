"""The fulfillment port: a handler that grants a code's benefit (DESIGN section 4)."""

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

FulfillmentHandler = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]
