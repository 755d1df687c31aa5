"""A running system for each store, as the fuzzers attack it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.support.processes import System
from tests.conftest import running


@pytest.fixture
def any_system(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    """Intake, worker and results on MongoDB, then on the embedded store; an outcome is
    waited for a second at most, so that no fuzzed `?wait=` holds the run up."""
    with running({**each_store_env, "REDEEM_MAX_WAIT_S": "1"}, tmp_path) as system:
        system.start_all("intake", "worker", "results")
        yield system
