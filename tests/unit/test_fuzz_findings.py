"""Input the fuzzers (tests/fuzz) found the intake answering with a 500 or a status its
OpenAPI document does not declare: each is refused with 422 and 40660 instead."""

from __future__ import annotations

import httpx
import pytest

from shared.domain.reasons import DomainError
from shared.messages import AsyncResponseCommand, parse

ADMIN = {"Authorization": "Bearer admin-key"}
INVALID = (422, 40660)


def refusal(answer: httpx.Response) -> tuple[int, int]:
    return answer.status_code, answer.json()["reasonCode"]


async def test_a_body_that_is_not_utf8_is_refused_as_bad_input(api: httpx.AsyncClient) -> None:
    await api.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)

    answer = await api.patch(
        "/v1/campaigns/gems",
        content=b"\xff\t\x0e",
        headers={**ADMIN, "content-type": "application/json"},
    )

    assert refusal(answer) == INVALID


async def test_a_csv_header_with_a_bare_carriage_return_is_refused(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)

    answer = await api.post(
        "/v1/campaigns/gems/codes/import",
        content=b"scanCode\r,codeState\nGEMS-1,Available\n",
        headers={**ADMIN, "content-type": "text/csv"},
    )

    assert refusal(answer) == INVALID
    assert "not a CSV line" in answer.json()["message"]


async def test_a_csv_line_with_a_bare_carriage_return_is_a_rejected_line(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)

    answer = await api.post(
        "/v1/campaigns/gems/codes/import",
        content=b"scanCode\nGEMS\r-1\nGEMS-2\n",
        headers={**ADMIN, "content-type": "text/csv"},
    )

    report = answer.json()
    assert (answer.status_code, report["added"], report["rejected"]) == (200, 1, 1)
    assert [(e["line"], e["reasonCode"]) for e in report["errors"]] == [(2, 40660)]


@pytest.mark.parametrize(
    "sent",
    [{"validEnd": False}, {"maxRetries": "3"}, {"async": 1}, {"retryBackoff": {"max": True}}],
)
async def test_a_value_of_another_json_type_is_refused_not_converted(
    api: httpx.AsyncClient, sent: dict[str, object]
) -> None:
    answer = await api.post("/v1/campaigns", json={"codeType": "gems", **sent}, headers=ADMIN)

    assert refusal(answer) == INVALID
    assert (await api.get("/v1/campaigns/gems", headers=ADMIN)).status_code == 404


@pytest.mark.parametrize("attempt", ["true", "1.0", '"1"'])
def test_an_amqp_command_of_another_json_type_is_refused_not_converted(attempt: str) -> None:
    body = f'{{"redemptionId": "r-1", "attempt": {attempt}, "asyncResponse": {{}}}}'

    with pytest.raises(DomainError, match="attempt: Input should be a valid integer"):
        parse(AsyncResponseCommand, body.encode())
