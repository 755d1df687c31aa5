"""What the use cases measure for Prometheus: how long redemptions take to end, and the
lockouts of the failure budget. Each service serves them on its `/metrics`."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from shared.domain.model import Redemption

# From 10 ms to 10 minutes: a synchronous redemption ends within a second, an
# asynchronous one when its partner answers.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)

ENDED = Histogram(
    "redemption_accepted_to_ended_seconds",
    "From a redemption's acceptance by the intake to its terminal state, by status",
    ["status"],
    buckets=_LATENCY_BUCKETS,
)
LOCKOUTS = Counter(
    "redemption_lockouts",
    "Redemptions refused for too many failed ones (40765): by the intake before publishing"
    " ('intake'), or by a worker before it looks at the code ('worker')",
    ["where"],
)
for _where in ("intake", "worker"):
    LOCKOUTS.labels(_where)  # served at 0 until the first


def ended(redemption: Redemption, completed_now: bool) -> None:
    """Observe `redemption` once, by whoever made it terminal (`completed_now`)."""
    if completed_now and redemption.completed_at is not None:
        seconds = (redemption.completed_at - redemption.accepted_at).total_seconds()
        ENDED.labels(redemption.status.value).observe(max(0.0, seconds))
