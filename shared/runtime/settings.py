"""Configuration from the environment (prefix `REDEEM_`), one model for all services."""

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.access import ApiKeys
from shared.domain.addresses import AddressPolicy
from shared.domain.profiles import Apps, Servers
from shared.domain.throttling import FailureLimits
from shared.signing import Keyring


class Settings(BaseSettings):
    # A refused value may be a secret: errors name what is wrong, never the value.
    model_config = SettingsConfigDict(
        env_prefix="REDEEM_", extra="ignore", hide_input_in_errors=True
    )

    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    mongodb_url: str | None = Field(
        None, description="the MongoDB store; unset: the embedded SQLite store in data_dir"
    )
    mongodb_db: str = "redemption"
    data_dir: Path = Field(Path(".redeem"), description="embedded store, logs, generated keys")
    http_host: str = "127.0.0.1"
    http_port: int | None = Field(
        None, description="intake 8080, worker 8081, results 8082 unless set; 0 turns it off"
    )
    forwarded_allow_ips: str = Field(
        "",
        description="the reverse proxies (addresses or CIDR networks, comma-separated) whose"
        " X-Forwarded-For names the intake's client address; empty: none, the connection's"
        " own address is the client's",
    )
    api_keys: str = Field(
        "",
        description="key=role,role;key=role (roles: redeem, fulfillment, admin); a key may be"
        " given as sha256:<hex digest>, and limited with |campaigns=A,B and |handlers=H,I",
    )
    environment: Literal["production", "development"] = Field(
        "production",
        description="development: the development secrets of docker-compose.yml are allowed"
        " and a missing redemption_id_secret is generated in data_dir",
    )
    redemption_id_secret: str | None = Field(
        None,
        description="keys redemption ids (HMAC-SHA256 of userId and requestId); the same on"
        " every intake, never changed; unset: generated once in data_dir on the embedded"
        " store or in development, else the intake refuses to start",
    )
    context_secret: str | None = Field(
        None, description="signs paging contexts; the same on every intake (random if unset)"
    )
    console_secret: str | None = Field(
        None,
        description="signs the web console's sessions; the same on every intake (random if"
        " unset: sessions then end when the intake restarts, and hold on that intake only)",
    )
    console_session_s: float = Field(
        8 * 3600.0, gt=0, le=7 * 86400, description="how long a console session lasts"
    )
    code_secret: str | None = Field(
        None,
        description="keys the hashed codes of campaigns with hashCodes (HMAC-SHA256); the same"
        " on every intake and worker, never changed (codes hashed under another are not found);"
        " unset: no campaign may hash its codes",
    )
    generated_codes_ttl_s: float = Field(
        86400.0,
        gt=0,
        description="how long the codes a generation job made for a campaign with hashCodes"
        " wait for their one download",
    )
    prefetch: int = Field(32, ge=1, description="unacked messages a worker holds at once")
    max_deliveries: int = Field(
        5, ge=1, description="deliveries of one message before it is dead-lettered"
    )
    campaign_cache_ttl_s: float = Field(
        1.0, ge=0, description="how long a worker reuses a campaign it read"
    )
    fulfillment_lease_s: float = Field(
        10.0,
        gt=0,
        description="longest a worker holds a timer it acts on (or polls a handler) before"
        " another worker may take it over",
    )
    timer_scan_s: float = Field(
        0.25, gt=0, le=1, description="how often a worker looks for timers that fell due"
    )
    timer_concurrency: int = Field(64, ge=1, description="timers a worker acts on at once")
    webhook_timeout_s: float = Field(
        10.0, gt=0, description="longest one webhook try waits; all tries fit in the attempt's time"
    )
    webhook_secrets: str = Field(
        "",
        description="each handler's webhook signing keys, oldest first (the last signs):"
        " 'HANDLER=KEYID:SECRET[,KEYID:SECRET];*=KEYID:SECRET' ('*': any handler without"
        " its own); a handler with no key gets no webhook call",
    )
    webhook_secret: str | None = Field(
        None, description="retired: refused at start, REDEEM_WEBHOOK_SECRETS replaces it"
    )
    webhook_allowed_networks: str = Field(
        "",
        description="networks (CIDR, comma-separated) whose private, loopback or link-local"
        " addresses webhooks may reach, e.g. '10.20.0.0/16,127.0.0.0/8,::1/128'",
    )
    webhook_max_response_bytes: int = Field(
        64 * 1024, ge=1, description="largest webhook answer read; a bigger one is a bad response"
    )
    failure_limits: str = Field(
        "user=10/15m",
        description="failed redemptions allowed per scope in a sliding window, e.g."
        " 'user=10/15m,key=1000/1h,address=100/15m,campaign=off' (units s, m, h, d); scopes"
        " not named keep their default: user 10/15m, the others off",
    )
    uniform_refusals: bool = Field(
        False,
        description="tell callers every refusal a guess gets (unknown, inactive, void,"
        " someone else's code) as one, 40395, unless a campaign says otherwise",
    )
    braincloud_apps: str = Field(
        "",
        description="apps whose brainCloud clients /dispatcherv2 serves:"
        " 'APPID=SECRET[|campaigns=A,B];...' (the secret signs their packets)",
    )
    braincloud_servers: str = Field(
        "",
        description="servers /s2sdispatcher serves: 'NAME=SECRET[|campaigns=A,B][|handlers=H];...'"
        " (SECRET may be sha256:<hex digest>)",
    )
    braincloud_cors_origins: str = Field(
        "",
        description="origins whose browser game clients may call the brainCloud front door"
        " (comma-separated, e.g. https://game.example; '*' any); none by default",
    )
    braincloud_session_expiry_s: int = Field(
        1200, ge=1, le=7 * 86400, description="a brainCloud session's life since its last packet"
    )
    braincloud_wait_s: float = Field(
        10.0,
        gt=0,
        le=14,
        description="longest a REDEEM_CODE waits for its outcome before it answers with the"
        " code as it stands (below the 15 s after which the libraries send a packet again)",
    )
    braincloud_max_kill_count: int = Field(
        11, ge=1, description="errors in a row after which a brainCloud client stops itself"
    )
    publish_timeout_s: float = Field(5.0, gt=0)
    max_wait_s: float = Field(30.0, gt=0, description="upper bound of ?wait= on RedeemCode")
    max_import_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="largest file a bulk import takes, in bytes"
    )
    relay_batch: int = Field(256, ge=1)
    relay_idle_s: float = Field(0.05, gt=0, description="relay pause when nothing is pending")
    gauges_every_s: float = Field(
        10.0, gt=0, description="how often `results` samples the backlogs it serves as metrics"
    )
    mongodb_command_log: Path | None = Field(
        None, description="diagnostics: write the MongoDB commands sent, counted, to this file"
    )
    log_level: str = "INFO"
    log_format: str = Field("auto", description="json, console, or auto (console on a terminal)")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "redeem.sqlite3"

    def port_for(self, default: int) -> int:
        return default if self.http_port is None else self.http_port

    @field_validator("failure_limits")
    @classmethod
    def _limits_parse(cls, spec: str) -> str:
        FailureLimits.parse(spec)
        return spec

    @field_validator("webhook_secrets")
    @classmethod
    def _webhook_secrets_parse(cls, spec: str) -> str:
        Keyring.parse(spec)
        return spec

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_retired(cls, secret: str | None) -> None:
        if secret is not None:
            raise ValueError(
                "REDEEM_WEBHOOK_SECRET is no longer read: give each handler its own keys in"
                " REDEEM_WEBHOOK_SECRETS (HANDLER=KEYID:SECRET;...; see the README)"
            )
        return None

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks_parse(cls, spec: str) -> str:
        AddressPolicy.parse(spec)
        return spec

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies_parse(cls, spec: str) -> str:
        for entry in filter(None, (part.strip() for part in spec.split(","))):
            try:
                ipaddress.ip_network(entry)
            except ValueError as error:
                raise ValueError(f"not an address or a network: {error}") from None
        return spec

    def trusted_proxies(self) -> list[str]:
        """The reverse proxies of `forwarded_allow_ips`, for uvicorn."""
        return list(filter(None, (part.strip() for part in self.forwarded_allow_ips.split(","))))

    def webhook_keyring(self) -> Keyring:
        return Keyring.parse(self.webhook_secrets)

    def webhook_address_policy(self) -> AddressPolicy:
        return AddressPolicy.parse(self.webhook_allowed_networks)

    def failure_limits_parsed(self) -> FailureLimits:
        return FailureLimits.parse(self.failure_limits)

    @field_validator("braincloud_apps")
    @classmethod
    def _apps_parse(cls, spec: str) -> str:
        Apps.parse(spec)
        return spec

    @field_validator("braincloud_servers")
    @classmethod
    def _servers_parse(cls, spec: str) -> str:
        Servers.parse(spec)
        return spec

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, spec: str) -> str:
        ApiKeys.parse(spec)
        return spec

    def api_keys_parsed(self) -> ApiKeys:
        return ApiKeys.parse(self.api_keys)
