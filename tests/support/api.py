"""The intake's HTTP API as a caller uses it."""

from __future__ import annotations

from typing import Any

import httpx

from bench.support.processes import ADMIN_KEY, REDEEM_KEY


class Api:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=60)
        self.admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.redeemer = {"Authorization": f"Bearer {REDEEM_KEY}"}

    async def close(self) -> None:
        await self.http.aclose()

    async def campaign(self, code_type: str, **fields: Any) -> dict[str, Any]:
        answer = await self.http.post(
            "/v1/campaigns", headers=self.admin, json={"codeType": code_type, **fields}
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    async def code(
        self, code_type: str, scan: str, state: str = "Available", **fields: Any
    ) -> dict[str, Any]:
        answer = await self.http.post(
            f"/v1/campaigns/{code_type}/codes",
            headers=self.admin,
            json={"scanCode": scan, "codeState": state, **fields},
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    async def redeem(
        self, user: str, scan: str, *, wait: float | None = 20, **fields: Any
    ) -> httpx.Response:
        params = {"wait": wait} if wait else {}
        return await self.http.post(
            "/v1/redemptions",
            headers=self.redeemer,
            params=params,
            json={"userId": user, "scanCode": scan, **fields},
        )

    async def lookup(self, code_type: str, scan: str) -> dict[str, Any]:
        answer = await self.http.get(f"/v1/campaigns/{code_type}/codes/{scan}", headers=self.admin)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def redemption(self, redemption_id: str) -> httpx.Response:
        return await self.http.get(f"/v1/redemptions/{redemption_id}", headers=self.redeemer)
