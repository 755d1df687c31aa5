"""What a service checks before it starts: docker-compose's development secrets only in
development, a redemption id secret the same on every intake, and the data directory's
files readable by their owner only."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from services.cli import local, up
from shared.adapters.files import create_private, open_private, private_dir
from shared.domain.access import digest_of
from shared.runtime import startup
from shared.runtime.settings import Settings
from shared.runtime.startup import StartupError

ROOT = Path(__file__).resolve().parents[2]
MONGODB = "mongodb://db:27017/"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def compose_defaults() -> dict[str, str]:
    """What docker-compose.yml sets when nothing is given: `NAME: ${NAME:-default}`."""
    text = (ROOT / "docker-compose.yml").read_text()
    return dict(re.findall(r"(REDEEM_\w+): \$\{\1:-([^}]*)\}", text))


def compose_settings() -> dict[str, str]:
    """docker-compose.yml's defaults as the fields of `Settings`."""
    return {name.removeprefix("REDEEM_").lower(): v for name, v in compose_defaults().items()}


# Keys and secrets of one's own in place of each development one of docker-compose.yml.
OWN = {
    "api_keys": "my-admin-key=admin",
    "redemption_id_secret": "my-redemption-id-secret-of-32-characters",
    "context_secret": "my-context-secret",
    "console_secret": "my-console-secret",
    "code_secret": "my-code-secret-of-32-characters-or-more",
    "webhook_secrets": "partner=k1:my-webhook-secret-of-its-own",
}


def test_every_key_and_secret_docker_compose_defaults_to_is_known_as_a_development_one() -> None:
    defaults = compose_defaults()
    keys = {entry.partition("=")[0] for entry in defaults["REDEEM_API_KEYS"].split(";")}
    assert keys == set(startup.DEVELOPMENT_KEYS)
    secrets = {name: value for name, value in defaults.items() if "SECRET" in name}
    assert secrets and all(
        any(dev in value for dev in startup.DEVELOPMENT_SECRETS) for value in secrets.values()
    ), secrets
    assert defaults["REDEEM_ENVIRONMENT"] == "development"
    assert startup.logs_in_as_guest_elsewhere(defaults["REDEEM_RABBITMQ_URL"])


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"api_keys": "mine=admin;dev-redeem-key=redeem"}, "REDEEM_API_KEYS"),
        ({"api_keys": f"{digest_of('dev-admin-key')}=admin"}, "REDEEM_API_KEYS"),
        ({"context_secret": "change-me-in-production"}, "REDEEM_CONTEXT_SECRET"),
        ({"console_secret": "change-me-in-production"}, "REDEEM_CONSOLE_SECRET"),
        ({"redemption_id_secret": "change-me-in-production"}, "REDEEM_REDEMPTION_ID_SECRET"),
    ],
)
def test_a_development_secret_is_refused_outside_development_naming_its_setting(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(StartupError, match=f"^{named} holds the development"):
        startup.refuse_development_secrets(Settings(**fields))
    startup.refuse_development_secrets(Settings(environment="development", **fields))


def test_docker_composes_own_settings_start_in_development_only() -> None:
    settings = compose_settings()
    startup.refuse_development_secrets(Settings.model_validate(settings))
    production = settings | {"environment": "production"}
    with pytest.raises(StartupError):
        startup.refuse_development_secrets(Settings.model_validate(production))
    # With every key and secret of one's own, still not on compose's guest broker login.
    with pytest.raises(StartupError, match=r"^REDEEM_RABBITMQ_URL holds the development broker"):
        startup.refuse_development_secrets(Settings.model_validate(production | OWN))
    broker = {"rabbitmq_url": "amqp://redeem:my-broker-password@rabbitmq:5672/"}
    startup.refuse_development_secrets(Settings.model_validate(production | OWN | broker))


@pytest.mark.parametrize(
    ("own", "named", "beside"),
    [
        ({"api_keys": OWN["api_keys"]}, "REDEEM_REDEMPTION_ID_SECRET", "REDEEM_API_KEYS"),
        ({"code_secret": OWN["code_secret"]}, "REDEEM_API_KEYS", "REDEEM_CODE_SECRET"),
        (OWN, "REDEEM_RABBITMQ_URL", "REDEEM_API_KEYS"),
    ],
    ids=["own-keys", "own-code-secret", "all-own-but-the-broker"],
)
def test_in_development_compose_values_are_refused_beside_keys_or_secrets_of_ones_own(
    own: dict[str, str], named: str, beside: str
) -> None:
    """docker-compose.yml defaults to development: whoever sets only some keys or secrets
    of their own is told of the public ones left, not run with them unawares."""
    mixed = Settings.model_validate(compose_settings() | own)
    assert mixed.environment == "development"
    with pytest.raises(StartupError, match=f"^{named} holds the development .* your own {beside}"):
        startup.refuse_development_secrets(mixed)


def test_in_development_keys_and_secrets_all_of_ones_own_are_accepted() -> None:
    broker = {"rabbitmq_url": "amqp://redeem:my-broker-password@rabbitmq:5672/"}
    all_own = Settings.model_validate(compose_settings() | OWN | broker)
    in_development = Settings.model_validate(OWN | {"environment": "development"})
    for settings in (all_own, in_development):
        development, own = startup.development_and_own(settings)
        assert development == [] and "REDEEM_API_KEYS" in own
        startup.refuse_development_secrets(settings)  # raises StartupError if refused


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@rabbitmq:5672/",
        "amqps://guest:guest@10.0.0.5:5671/",
        "amqp://guest:guest@[2001:db8::1]:5672/",
        "amqp://rabbitmq:5672/",  # no login: the client logs in as guest:guest
        "amqp://guest@broker.example/",
    ],
)
def test_the_guest_broker_login_to_another_host_is_refused_outside_development(url: str) -> None:
    with pytest.raises(StartupError, match=r"^REDEEM_RABBITMQ_URL holds the development broker"):
        startup.refuse_development_secrets(Settings(rabbitmq_url=url))
    startup.refuse_development_secrets(Settings(rabbitmq_url=url, environment="development"))


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672/",
        "amqp://guest:guest@localhost:5672/",
        "amqp://guest:guest@[::1]:5672/",
        "amqp://guest:guest@[::ffff:127.0.0.1]:5672/",
        "amqp://redeem:my-password@rabbitmq:5672/",
        "amqp://guest:not-the-default@rabbitmq:5672/",
        "amqps://rabbitmq:5671/?auth=external",
    ],
)
def test_guest_on_this_machine_or_a_login_of_ones_own_is_accepted(url: str) -> None:
    """RabbitMQ lets guest in over loopback only, unless told otherwise: guest:guest to
    this machine is a local run's (`redeem up`, the tests)."""
    assert not startup.logs_in_as_guest_elsewhere(url)
    startup.refuse_development_secrets(Settings(rabbitmq_url=url))  # raises if refused


def test_a_service_with_a_development_key_exits_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDEEM_API_KEYS", "dev-admin-key=admin")
    monkeypatch.delenv("REDEEM_ENVIRONMENT", raising=False)
    with pytest.raises(SystemExit) as exited:
        startup.settings_for("worker")
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("worker not started: REDEEM_API_KEYS holds")
    monkeypatch.setenv("REDEEM_API_KEYS", "k=root")
    with pytest.raises(SystemExit):
        startup.settings_for("intake")
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("intake not started: REDEEM_API_KEYS: ") and "root" in line


def test_a_redemption_id_secret_set_is_used_as_is(tmp_path: Path) -> None:
    settings = Settings(mongodb_url=MONGODB, redemption_id_secret="s", data_dir=tmp_path / "d")
    assert startup.with_redemption_id_secret(settings) is settings
    assert not (tmp_path / "d").exists()


def test_on_mongodb_in_production_the_intake_needs_a_redemption_id_secret(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match=r"^REDEEM_REDEMPTION_ID_SECRET is not set"):
        startup.with_redemption_id_secret(Settings(mongodb_url=MONGODB, data_dir=tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "fields", [{}, {"mongodb_url": MONGODB, "environment": "development"}], ids=["embedded", "dev"]
)
def test_otherwise_one_is_made_once_in_the_data_directory(
    tmp_path: Path, fields: dict[str, Any]
) -> None:
    data = tmp_path / "a" / "data"
    first = startup.with_redemption_id_secret(Settings(data_dir=data, **fields))
    again = startup.with_redemption_id_secret(Settings(data_dir=data, **fields))
    assert first.redemption_id_secret and len(first.redemption_id_secret) >= 32
    assert again.redemption_id_secret == first.redemption_id_secret
    kept = data / startup.REDEMPTION_ID_SECRET_FILE
    assert (mode(tmp_path / "a"), mode(data), mode(kept)) == (0o700, 0o700, 0o600)


def test_private_files_are_made_for_their_owner_only_and_parents_passed_through_left_alone(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    os.chmod(mine, 0o755)
    assert private_dir(mine / "x" / "y") == mine / "x" / "y"
    assert (mode(mine), mode(mine / "x"), mode(mine / "x" / "y")) == (0o755, 0o700, 0o700)
    with open(open_private(mine / "logs" / "intake.log"), "ab") as log:
        log.write(b"started\n")
    assert (mode(mine / "logs"), mode(mine / "logs" / "intake.log")) == (0o700, 0o600)
    assert create_private(mine / "key", "one") and not create_private(mine / "key", "two")
    assert (mine / "key").read_text() == "one" and mode(mine / "key") == 0o600
    assert sorted(p.name for p in mine.iterdir()) == ["key", "logs", "x"]  # no draft left


def test_redeem_up_keeps_its_keys_record_and_logs_for_their_owner_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = local.admin_key(data)
    assert local.admin_key(data) == key
    local.RunningSystem("http://x", 1, "logs", "store", {}).save(data)
    child = up.Child("not-a-service", 0, data / "logs" / "x.log", dict(os.environ))
    child.start()
    assert child.process is not None and child.process.wait(30) != 0
    assert mode(data) == mode(data / "logs") == 0o700
    files = [data / local.ADMIN_KEY_FILE, data / local.SYSTEM_FILE, data / "logs" / "x.log"]
    assert [mode(f) for f in files] == [0o600] * 3
