"""What the intake's unit tests share: its HTTP API over the in-memory store, publishing
into a list. A module that needs other settings overrides the `settings` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker, intake_client

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings() -> Settings:
    return Settings(api_keys="admin-key=admin", context_secret="secret")


@pytest.fixture
def broker() -> RecordingBroker:
    return RecordingBroker()


@pytest.fixture
async def api(broker: RecordingBroker, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with intake_client(FakeStore(), broker, settings, lambda: NOW) as (client, _):
        yield client
