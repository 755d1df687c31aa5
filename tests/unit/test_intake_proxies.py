"""Whose X-Forwarded-For the intake believes: only the reverse proxies of
REDEEM_FORWARDED_ALLOW_IPS (none unless set), never loopback by default as uvicorn's
own default does; the client address the failure budget counts depends on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

from services.intake import __main__ as intake_main
from shared.runtime import logs, startup


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """What the intake's main hands uvicorn, the server not started."""
    for name in ("REDEEM_MONGODB_URL", "REDEEM_ENVIRONMENT", "REDEEM_FORWARDED_ALLOW_IPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDEEM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REDEEM_API_KEYS", "admin-key=admin")
    monkeypatch.setattr(logs, "configure", lambda *_: None)
    options: dict[str, Any] = {}

    def run(app: object, **given: Any) -> None:
        options.update(given)

    monkeypatch.setattr(uvicorn, "run", run)
    return options


def test_by_default_no_proxy_is_trusted(served: dict[str, Any]) -> None:
    intake_main.main()
    assert served["proxy_headers"] is False and served["forwarded_allow_ips"] == []


def test_the_proxies_set_are_the_only_ones_trusted(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDEEM_FORWARDED_ALLOW_IPS", "10.0.0.5, 10.1.0.0/16,::1")
    intake_main.main()
    assert served["proxy_headers"] is True
    assert served["forwarded_allow_ips"] == ["10.0.0.5", "10.1.0.0/16", "::1"]


@pytest.mark.parametrize("spec", ["*", "proxy.internal", "10.0.0.5/8"])
def test_a_proxy_that_is_no_address_or_network_stops_the_intake_naming_the_setting(
    spec: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDEEM_FORWARDED_ALLOW_IPS", spec)
    with pytest.raises(SystemExit) as exited:
        startup.settings_for("intake")
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("intake not started: REDEEM_FORWARDED_ALLOW_IPS: ")
