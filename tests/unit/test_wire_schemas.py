"""Wire models keep their JSON schema: a change must be deliberate (and additive).

After an intended change, refresh the snapshots with
`REDEEM_UPDATE_SCHEMAS=1 .venv/bin/pytest tests/unit/test_wire_schemas.py`.
"""

import json
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from shared import messages

SNAPSHOTS = Path(__file__).parent / "schemas"
MODELS: list[type[BaseModel]] = [
    messages.RedeemCommand,
    messages.AsyncResponseCommand,
    messages.RedemptionJob,
    messages.RedemptionRecord,
    messages.CodeEventMessage,
    messages.CodeRecord,
    messages.ErrorBody,
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_the_schema_matches_its_snapshot(model: type[BaseModel]) -> None:
    schema = model.model_json_schema()
    path = SNAPSHOTS / f"{model.__name__}.json"
    if os.environ.get("REDEEM_UPDATE_SCHEMAS"):
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"no snapshot for {model.__name__}: see this module's docstring"
    assert schema == json.loads(path.read_text())


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_bodies_carrying_a_schema_version_name_version_1(model: type[BaseModel]) -> None:
    field = model.model_fields.get("schemaVersion")
    if field is not None:
        assert field.default == 1


def test_a_newer_sender_adding_fields_stays_readable() -> None:
    body = b'{"userId": "u", "scanCode": "ABC", "addedLater": {"x": 1}}'
    assert messages.parse(messages.RedeemCommand, body).user_id == "u"
