"""`redeem up` hands its children every setting the operator gave."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.up import children
from shared.runtime.settings import Settings

# What `up` decides for its children itself, whatever the operator set.
DECIDED = {
    "rabbitmq_url",
    "data_dir",
    "api_keys",
    "environment",
    "redemption_id_secret",
    "context_secret",
    "console_secret",
    "webhook_secrets",
    "webhook_allowed_networks",
    "log_format",
    "log_level",
    "mongodb_url",
    "mongodb_db",
    "http_port",
}


def test_every_setting_the_operator_gives_reaches_every_child(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    given = {
        f"REDEEM_{name.upper()}": f"given-{name}"
        for name in Settings.model_fields
        if name not in DECIDED
    }
    assert {"REDEEM_CODE_SECRET", "REDEEM_GENERATED_CODES_TTL_S"} <= given.keys()
    assert "REDEEM_WEBHOOK_MAX_RESPONSE_BYTES" in given
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    settings = Settings.model_construct(data_dir=tmp_path / "data", http_port=0)
    for child in children(settings, 1, "key=admin", tmp_path / "logs"):
        passed = {k: v for k, v in child.env.items() if k in given}
        if child.name == "partner":  # the partner simulator's own are `up`'s to decide
            passed = {k: v for k, v in passed.items() if not k.startswith("REDEEM_PARTNER_")}
            given = {k: v for k, v in given.items() if not k.startswith("REDEEM_PARTNER_")}
        assert passed == given, child.name
