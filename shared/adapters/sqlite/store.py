"""`SqliteStore`: the aggregates' mixins composed into the `Store` port, with
the connection's lifecycle."""

from __future__ import annotations

from shared.adapters.sqlite import schema
from shared.adapters.sqlite.attempts import Attempts
from shared.adapters.sqlite.campaigns import Campaigns
from shared.adapters.sqlite.claims import Claims
from shared.adapters.sqlite.codes import Codes
from shared.adapters.sqlite.jobs import Jobs
from shared.adapters.sqlite.outbox import Outbox
from shared.adapters.sqlite.profiles import Profiles
from shared.adapters.sqlite.redemptions import Redemptions
from shared.adapters.sqlite.throttling import FailureWindows


class SqliteStore(
    Campaigns, Codes, Attempts, Claims, Redemptions, Outbox, Jobs, FailureWindows, Profiles
):
    """The `Store` port on SQLite."""

    async def prepare(self) -> None:
        await self._run(schema.prepare)

    async def close(self) -> None:
        await self._connection.close()

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())
