"""What a service checks before it starts: its settings parse, no development secret
of docker-compose.yml outside development, and (the intake) a redemption id secret.

A mistake ends the process with one line on stderr naming the setting, and status 2.
"""

from __future__ import annotations

import hashlib
import secrets
import sys
from pathlib import Path

from pydantic import ValidationError

from shared.adapters.files import create_private
from shared.runtime.settings import Settings

# The keys and secrets docker-compose.yml sets when none is given: public, so a
# service refuses them unless REDEEM_ENVIRONMENT=development.
DEVELOPMENT_KEYS = ("dev-admin-key", "dev-redeem-key", "dev-partner-key")
DEVELOPMENT_SECRETS = ("change-me-in-production",)
REDEMPTION_ID_SECRET_FILE = "redemption-id-secret"
CODE_SECRET_FILE = "code-secret"


class StartupError(Exception):
    """A setting a service cannot start with; the message names it."""


def settings_for(
    service: str, *, redemption_ids: bool = False, code_secret: bool = False
) -> Settings:
    """The settings from the environment, checked; with `redemption_ids`, their redemption
    id secret resolved, with `code_secret` their code secret (`with_code_secret`). Exits
    with one line on stderr when a check fails."""
    try:
        settings = Settings()
        refuse_development_secrets(settings)
        settings = with_code_secret(settings) if code_secret else settings
        return with_redemption_id_secret(settings) if redemption_ids else settings
    except ValidationError as invalid:
        error = invalid.errors()[0]
        name = "REDEEM_" + "_".join(map(str, error["loc"])).upper()
        message = f"{name}: {error['msg']}"
    except StartupError as refused:
        message = str(refused)
    print(f"{service} not started: {message}", file=sys.stderr)
    raise SystemExit(2)


def refuse_development_secrets(settings: Settings) -> None:
    """Refuse docker-compose's development keys and secrets, unless in development."""
    if settings.environment == "development":
        return
    development = {hashlib.sha256(key.encode()).digest() for key in DEVELOPMENT_KEYS}
    if development & set(settings.api_keys_parsed().digests()):
        raise StartupError(_development("REDEEM_API_KEYS", "keys"))
    for name, value in settings:
        if "secret" in name and any(dev in str(value or "") for dev in DEVELOPMENT_SECRETS):
            raise StartupError(_development(f"REDEEM_{name.upper()}", "secret"))


def _development(setting: str, what: str) -> str:
    return (
        f"{setting} holds the development {what} of docker-compose.yml: set your own, or"
        " REDEEM_ENVIRONMENT=development"
    )


def with_redemption_id_secret(settings: Settings) -> Settings:
    """`settings` with a redemption id secret: the one set, else the one kept in the data
    directory (made on first use) when every intake shares that directory (the embedded
    store) or in development. On MongoDB in production it must be set, the same on
    every intake: one generated per machine would make one request two redemptions."""
    if settings.redemption_id_secret:
        return settings
    if settings.mongodb_url and settings.environment != "development":
        raise StartupError(
            "REDEEM_REDEMPTION_ID_SECRET is not set: give every intake the same random one"
            " (or REDEEM_ENVIRONMENT=development to generate one in REDEEM_DATA_DIR)"
        )
    secret = generated_secret(settings.data_dir, REDEMPTION_ID_SECRET_FILE)
    return settings.model_copy(update={"redemption_id_secret": secret})


def with_code_secret(settings: Settings) -> Settings:
    """`settings` with a code secret: the one set, else, on the embedded store (whose
    intake and workers share the data directory), the one kept there (made on first use).
    On MongoDB none is made, even in development: processes on other machines would hash
    with others. Without one, campaigns that hash codes are refused."""
    if settings.code_secret or settings.mongodb_url:
        return settings
    secret = generated_secret(settings.data_dir, CODE_SECRET_FILE)
    return settings.model_copy(update={"code_secret": secret})


def generated_secret(data_dir: Path, name: str) -> str:
    """A secret kept in the data directory, made on first use (readable by its owner only)."""
    path = data_dir / name
    create_private(path, secrets.token_urlsafe(32) + "\n")
    secret = path.read_text().strip()
    if not secret:
        raise StartupError(f"{path} is empty: remove it to have a new secret made")
    return secret
