"""brainCloud's official JavaScript client, unchanged, driven through a scenario.

`run_official_client` runs `node tests/braincloud/run.js` (npm `braincloud` 4.15.0, installed
by `./dev test` into tests/braincloud/node_modules) and returns its JSON lines: one per step,
`{"client", "step", "op", "result"}` with `result` the argument the client gives its callback
(`{"status": 200, "data": {...}}` or `{"status", "reason_code", "status_message",
"severity"}`). The scenario format is described at the top of run.js.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

HARNESS = Path(__file__).resolve().parent / "braincloud"
RUN_JS = HARNESS / "run.js"


def _check_installed() -> str:
    node = shutil.which("node")
    if node is None:
        raise AssertionError(
            "node is not installed: the brainCloud client tests need Node.js 20 and npm"
        )
    if not (HARNESS / "node_modules" / "braincloud").is_dir():
        raise AssertionError(
            f"the official brainCloud client is not installed in {HARNESS / 'node_modules'}: "
            "run `./dev test`, which installs it (npm ci --prefix tests/braincloud)"
        )
    return node


def _parse(stdout: str, output: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for text in stdout.splitlines():
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            raise AssertionError(
                f"run.js printed a line that is not JSON: {text!r}\n{output}"
            ) from None
        if not isinstance(line, dict):
            raise AssertionError(f"run.js printed a line that is not an object: {text!r}\n{output}")
        lines.append(line)
    return lines


async def run_official_client(
    scenario: dict[str, Any], *, timeout_s: float = 120
) -> list[dict[str, Any]]:
    """Run the scenario with the official client; fail unless every step got its callback."""
    node = _check_installed()
    process = await asyncio.create_subprocess_exec(
        node,
        str(RUN_JS),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(
            process.communicate(json.dumps(scenario).encode()), timeout_s
        )
    except TimeoutError:
        process.kill()
        stdout, stderr = await process.communicate()
        raise AssertionError(
            f"run.js did not finish within {timeout_s} s\n{_output(stdout, stderr)}"
        ) from None
    output = _output(stdout, stderr)
    if process.returncode != 0:
        raise AssertionError(f"run.js exited with {process.returncode}\n{output}")
    return _parse(stdout.decode(), output)


def _output(stdout: bytes, stderr: bytes) -> str:
    return (
        f"--- stdout\n{stdout.decode(errors='replace')}"
        f"--- stderr\n{stderr.decode(errors='replace')}"
    )
