"""What an idle failpoint costs on the hot path: nanoseconds per `await failpoint(...)`.

Times N awaits of `failpoint("after-claim")` with no failpoint configured and
with another one configured, beside N awaits of an empty `async def`; the
three take turns, `--repeat` rounds, and each keeps its best round, so that
a busy moment of a shared machine falls on all of them alike.

    .venv/bin/python -m bench.failpoints [--calls 1000000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from shared.runtime import failpoints

Call = Callable[[str], Awaitable[None]]


async def nothing(name: str) -> None:
    return None


async def per_call_ns(call: Call, calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        await call("after-claim")
    return (time.perf_counter_ns() - started) / calls


async def main(calls: int, repeat: int) -> None:
    variants: dict[str, tuple[str, Call]] = {
        "an empty async def": ("", nothing),
        "failpoint, none configured": ("", failpoints.failpoint),
        "failpoint, another one configured": ("relay-before-mark=raise", failpoints.failpoint),
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeat):
        for label, (spec, call) in variants.items():
            failpoints.configure(spec)
            best[label] = min(best[label], await per_call_ns(call, calls))
    failpoints.configure("")
    empty = best["an empty async def"]
    print(f"{calls:,} awaits, best of {repeat} rounds:")
    for label, ns in best.items():
        print(f"  {label:34} {ns:6.1f} ns per call ({ns - empty:+.1f} ns)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.calls, arguments.repeat))
