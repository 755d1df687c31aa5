"""The console's forms read into the API's own bodies, so that one model checks both.

A form sends text: each field is read as its body field's JSON type (a whole number, a
number, a checkbox, an instant typed in UTC) and the body model validates the rest. A
value that is not what its field takes is refused with 40660 and the field's label.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from shared.clock import to_ms
from shared.domain.reasons import DomainError, ReasonCode

Kind = Literal["text", "int", "float", "check", "instant", "tristate"]
B = TypeVar("B", bound=BaseModel)
INSTANT_FORMAT = "%Y-%m-%dT%H:%M"  # an <input type="datetime-local">'s value, read as UTC
SHOWN = "-shown"  # beside an instant an edit shows: the value it showed

CAMPAIGN_FIELDS: dict[str, Kind] = {
    "codeType": "text",
    "codeUseType": "text",
    "scanCode": "text",
    "maxRedemptions": "int",
    "description": "text",
    "validStart": "instant",
    "validEnd": "instant",
    "handler": "text",
    "handlerTransport": "text",
    "webhookUrl": "text",
    "privateTestPartner": "check",
    "async": "check",
    "maxRetries": "int",
    "timeout": "float",
    "pollInterval": "float",
    "failureLimits": "text",
    "uniformRefusals": "tristate",
    "hashCodes": "check",
}
# What an edit changes: every field it shows is sent, a blank one as null (a window
# opened, a description or the campaign's own limits taken away).
EDIT_FIELDS: dict[str, Kind] = {
    "description": "text",
    "validStart": "instant",
    "validEnd": "instant",
    "maxRedemptions": "int",
    "maxRetries": "int",
    "timeout": "float",
    "failureLimits": "text",
}
GENERATE_FIELDS: dict[str, Kind] = {"quantity": "int", "codeState": "text", "prefix": "text"}
_LABELS = {"async": "asynchronous", "codeType": "campaign name"}


def read(model: type[B], form: Mapping[str, Any], fields: Mapping[str, Kind], **fixed: Any) -> B:
    """`model` from the fields of `form` that `fields` names (blank ones left out, so that
    the model's defaults hold), and `fixed` as given."""
    body = {
        name: value
        for name, kind in fields.items()
        if (value := _value(form, name, kind)) != "" and not (kind == "check" and not value)
    }
    return _validated(model, {**body, **fixed})


def read_all(
    model: type[B], form: Mapping[str, Any], fields: Mapping[str, Kind], **fixed: Any
) -> B:
    """As `read`, but a blank field is sent as null: an edit of every field shown. An
    instant the operator left as the form showed it (`<name>-shown`, to the minute) is
    not sent, so that its seconds stay as they were."""
    body = {
        name: _value(form, name, kind)
        for name, kind in fields.items()
        if name in form and not (kind == "instant" and form.get(name) == form.get(name + SHOWN))
    }
    return _validated(model, {**{k: v if v != "" else None for k, v in body.items()}, **fixed})


def instant_value(ms: int | None) -> str:
    """An instant as a datetime-local input shows it (UTC)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime(INSTANT_FORMAT)


def _value(form: Mapping[str, Any], name: str, kind: Kind) -> Any:
    text = form.get(name)
    if kind == "check":
        return text is not None and text != ""
    if not isinstance(text, str) or not text.strip():
        return ""
    text = text.strip()
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "instant":
            return to_ms(datetime.strptime(text, INSTANT_FORMAT).replace(tzinfo=UTC))
        if kind == "tristate":
            return {"true": True, "false": False}[text]
    except (ValueError, KeyError):
        raise DomainError(
            ReasonCode.INVALID_PARAMETER_VALUE, f"{_label(name)}: {text!r} is not {_WHAT[kind]}"
        ) from None
    return text


_WHAT = {
    "int": "a whole number",
    "float": "a number",
    "instant": "a date and time",
    "tristate": "yes, no or the default",
    "text": "text",
    "check": "on or off",
}


def _validated(model: type[B], body: dict[str, Any]) -> B:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        parts = [
            f"{_label('.'.join(str(p) for p in e['loc']) or 'form')}: {e['msg']}"
            for e in exc.errors()[:5]
        ]
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "; ".join(parts)) from None


def _label(name: str) -> str:
    return _LABELS.get(name, name)
