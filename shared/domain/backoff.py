"""`retryBackoff`: how long a failed fulfillment attempt waits before the next one."""

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """The pause after failed attempt n (0-based) is `initial * multiplier**n`,
    capped at `max`, plus up to `jitter` seconds at random."""

    initial: float = 1.0
    max: float = 300.0
    multiplier: float = 2.0
    jitter: float = 0.0


def compute_backoff(policy: RetryPolicy, attempt: int, unit: float) -> float:
    """Seconds to wait after failed attempt `attempt`; `unit` is uniform in [0, 1)."""
    base = min(policy.max, policy.initial * policy.multiplier**attempt)
    return base + policy.jitter * unit
