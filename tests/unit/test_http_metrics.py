"""HTTP requests counted by method, route template and status: no client can make new
series, whatever path or method it sends."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from prometheus_client import REGISTRY

from shared.runtime.ops import HttpMetrics


def counted(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("http_requests_total", labels) or 0.0


async def test_requests_are_counted_by_template_and_odd_methods_as_other() -> None:
    app = FastAPI()

    @app.get("/items/{item}")
    async def item(item: str) -> dict[str, str]:
        return {"item": item}

    app.add_middleware(HttpMetrics)
    before = {
        key: counted(*key)
        for key in [
            ("GET", "/items/{item}", "200"),
            ("other", "/items/{item}", "405"),
            ("GET", "unmatched", "404"),
        ]
    }
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for n in range(3):
            assert (await client.get(f"/items/{n}")).status_code == 200
        for odd in ("FOO1", "FOO2", "X" * 200):
            assert (await client.request(odd, "/items/1")).status_code == 405
        assert (await client.get("/no/such/path")).status_code == 404

    after = {key: counted(*key) - value for key, value in before.items()}
    assert after == {
        ("GET", "/items/{item}", "200"): 3,
        ("other", "/items/{item}", "405"): 3,
        ("GET", "unmatched", "404"): 1,
    }
    assert counted("FOO1", "/items/{item}", "405") == 0
