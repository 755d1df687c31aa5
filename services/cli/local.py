"""What `redeem up` leaves in the data directory for the other commands to find."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from services.cli.errors import CliError
from shared.adapters.files import write_private
from shared.runtime.startup import StartupError, generated_secret

ADMIN_KEY_FILE = "admin-key"
PARTNER_KEY_FILE = "partner-key"  # the demo partner's fulfillment key
CONTEXT_SECRET_FILE = "context-secret"
CONSOLE_SECRET_FILE = "console-secret"
WEBHOOK_SECRET_FILE = "webhook-secret"
SYSTEM_FILE = "system.json"


def admin_key(data_dir: Path) -> str:
    """The admin key of this data directory, made on first use (owner-readable only)."""
    return secret(data_dir, ADMIN_KEY_FILE)


def secret(data_dir: Path, name: str) -> str:
    """A secret kept in the data directory, made on first use (owner-readable only)."""
    try:
        return generated_secret(data_dir, name)
    except StartupError as error:
        raise CliError(str(error)) from None


@dataclass(frozen=True)
class RunningSystem:
    """Where a running `redeem up` answers."""

    url: str
    pid: int
    logs: str
    store: str
    processes: dict[str, int]

    def save(self, data_dir: Path) -> None:
        write_private(data_dir / SYSTEM_FILE, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def find(cls, data_dir: Path) -> RunningSystem:
        path = data_dir / SYSTEM_FILE
        try:
            found = cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            raise CliError(
                f"no running system found in {data_dir} (start one with `redeem up`)"
            ) from None
        if not _alive(found.pid):
            raise CliError(f"the system recorded in {path} is not running (start `redeem up`)")
        return found

    @staticmethod
    def forget(data_dir: Path) -> None:
        (data_dir / SYSTEM_FILE).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
