from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bench.support.processes import System
from tests.support.api import Api


@pytest.fixture
async def api(system: System) -> AsyncIterator[Api]:
    intake, _, _ = system.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()
