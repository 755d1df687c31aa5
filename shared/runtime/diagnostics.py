"""Opt-in diagnostics: count the MongoDB commands a process sends (for the benchmarks)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from pymongo import monitoring


class CommandCounter(monitoring.CommandListener):
    """Counts commands by name, and keeps the counts in a JSON file (at most
    every `every_s` seconds, and at `save()`), so that they can be read while
    the process runs."""

    def __init__(self, path: Path, every_s: float = 0.2) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._every_s = every_s
        self._saved_at = 0.0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.counts[event.command_name] += 1
        if time.monotonic() - self._saved_at > self._every_s:
            self.save()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None

    def save(self) -> None:
        self._saved_at = time.monotonic()
        partial = self.path.with_suffix(".tmp")
        partial.write_text(json.dumps(dict(self.counts)))
        partial.replace(self.path)
