"""What a service checks before it starts: its settings parse, no development secret
of docker-compose.yml outside development (nor beside secrets of one's own in it), and
(the intake) a redemption id secret.

A mistake ends the process with one line on stderr naming the setting, and status 2.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import sys
import urllib.parse
from pathlib import Path

from pydantic import ValidationError

from shared.adapters.files import create_private
from shared.runtime.settings import Settings

# The keys and secrets docker-compose.yml sets when none is given: public, so a
# service refuses them unless REDEEM_ENVIRONMENT=development.
DEVELOPMENT_KEYS = ("dev-admin-key", "dev-redeem-key", "dev-partner-key")
DEVELOPMENT_SECRETS = ("change-me-in-production",)
# RabbitMQ's default user, docker-compose.yml's broker login. RabbitMQ lets it in over
# loopback only, unless told otherwise (as its docker image is): guest:guest to a broker
# on this machine is a local run's, to another host a development broker's.
DEVELOPMENT_BROKER_LOGIN = ("guest", "guest")
BROKER_LOGIN = "broker login (guest:guest, to a host other than this one)"
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
    """Refuse docker-compose's development keys, secrets and broker login, unless in
    development; and in development too beside keys or secrets of one's own: whoever set
    some of their own is setting up more than a development system, and would otherwise
    keep the public rest unawares (docker-compose.yml defaults to development)."""
    development, own = development_and_own(settings)
    if not development:
        return
    setting, what = development[0]
    if settings.environment != "development":
        raise StartupError(_development(setting, what))
    if own:
        raise StartupError(
            f"{setting} holds the development {what} of docker-compose.yml beside your own"
            f" {own[0]}: set your own in every one (and REDEEM_ENVIRONMENT=production), or"
            " leave them all to docker-compose.yml"
        )


def development_and_own(settings: Settings) -> tuple[list[tuple[str, str]], list[str]]:
    """The settings holding a development value (with what it is), and the key and
    secret settings set to values of one's own."""
    development: list[tuple[str, str]] = []
    own: list[str] = []
    keys = {hashlib.sha256(key.encode()).digest() for key in DEVELOPMENT_KEYS}
    digests = set(settings.api_keys_parsed().digests())
    if keys & digests:
        development.append(("REDEEM_API_KEYS", "keys"))
    elif digests:
        own.append("REDEEM_API_KEYS")
    for name, value in settings:
        if "secret" not in name or not value:
            continue
        if any(dev in str(value) for dev in DEVELOPMENT_SECRETS):
            development.append((f"REDEEM_{name.upper()}", "secret"))
        else:
            own.append(f"REDEEM_{name.upper()}")
    if logs_in_as_guest_elsewhere(settings.rabbitmq_url):
        development.append(("REDEEM_RABBITMQ_URL", BROKER_LOGIN))
    return development, own


def logs_in_as_guest_elsewhere(url: str) -> bool:
    """Whether the broker URL logs in as guest:guest (as one without a login does) to a
    host other than this one (loopback)."""
    parts = urllib.parse.urlsplit(url)
    if urllib.parse.parse_qs(parts.query).get("auth", ["plain"])[0].lower() == "external":
        return False
    user = urllib.parse.unquote(parts.username or "") or "guest"
    password = urllib.parse.unquote(parts.password or "") or "guest"
    return (user, password) == DEVELOPMENT_BROKER_LOGIN and not _loopback(parts.hostname)


def _loopback(host: str | None) -> bool:
    if not host or host.rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # a name, perhaps of this machine: not looked up
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


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
