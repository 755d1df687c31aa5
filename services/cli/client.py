"""The intake's HTTP API, as the command line calls it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from services.cli.errors import CliError
from services.cli.local import RunningSystem, admin_key
from shared.runtime.settings import Settings


class Api:
    """A caller of the running system; every refusal becomes a one-line CliError."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"the system did not answer: {exc!r}") from None
        if answer.status_code >= 400:
            raise CliError(_refusal(answer))
        return answer.json()

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self.http.stream(method, path, **kwargs) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise CliError(_refusal(answer))
                yield answer
        except httpx.HTTPError as exc:
            raise CliError(f"the system did not answer: {exc!r}") from None


def _refusal(answer: httpx.Response) -> str:
    try:
        body = answer.json()
        return f"{body['reasonName']} ({body['reasonCode']}): {body['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {answer.status_code}: {answer.text[:200]}"


@contextmanager
def connect() -> Iterator[Api]:
    """The system of REDEEM_URL and REDEEM_API_KEY, else the one `redeem up` runs here."""
    settings = Settings()
    url = os.environ.get("REDEEM_URL") or RunningSystem.find(settings.data_dir).url
    key = os.environ.get("REDEEM_API_KEY") or admin_key(settings.data_dir)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=300) as http:
        yield Api(http)
