"""Configuration from the environment (prefix `REDEEM_`), one model for all services."""

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.throttling import FailureLimits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDEEM_", extra="ignore")

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
    api_keys: str = Field(
        "", description="key=role,role;key=role (roles: redeem, fulfillment, admin)"
    )
    context_secret: str | None = Field(
        None, description="signs paging contexts; the same on every intake (random if unset)"
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
        10.0, gt=0, description="longest one webhook request waits (within the attempt's time)"
    )
    webhook_secret: str | None = Field(
        None, description="signs webhook fulfillment requests; unset: webhooks are not called"
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
    publish_timeout_s: float = Field(5.0, gt=0)
    max_wait_s: float = Field(30.0, gt=0, description="upper bound of ?wait= on RedeemCode")
    max_import_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="largest file a bulk import takes, in bytes"
    )
    relay_batch: int = Field(256, ge=1)
    relay_idle_s: float = Field(0.05, gt=0, description="relay pause when nothing is pending")
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

    def failure_limits_parsed(self) -> FailureLimits:
        return FailureLimits.parse(self.failure_limits)

    def api_key_roles(self) -> dict[str, frozenset[str]]:
        keys: dict[str, frozenset[str]] = {}
        for entry in filter(None, (part.strip() for part in self.api_keys.split(";"))):
            key, _, roles = entry.partition("=")
            keys[key.strip()] = frozenset(r.strip() for r in roles.split(",") if r.strip())
        return keys
