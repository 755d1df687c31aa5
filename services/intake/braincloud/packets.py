"""Packets as brainCloud's libraries send them, and the entries they are answered with.

A packet is `{"packetId", "sessionId", "gameId", "messages": [{service, operation,
data}]}`; its answer is `{"packetId", "responses": [...]}` (`messageResponses` on the
server-to-server protocol), an entry for each message, in order, always in an HTTP
200: `{"status": 200, "data": ...}` or `{"status", "reason_code", "status_message",
"severity"}`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from shared.domain.model import RedemptionStatus
from shared.domain.reasons import DomainError, ReasonCode
from shared.messages import CodeRecord, RedemptionRecord

log = structlog.get_logger()
R = ReasonCode
T = TypeVar("T")
MAX_PACKET_BYTES = 256 * 1024
MAX_MESSAGES = 50
Entry = dict[str, Any]
Data = dict[str, Any]

# Refusals the libraries take as "the session is gone": they drop it and authenticate anew.
_SESSION_REASONS = frozenset(
    {R.BAD_SIGNATURE, R.PLAYER_SESSION_EXPIRED, R.NO_SESSION, R.SERVER_SESSION_EXPIRED}
)
_SERVER_FAULTS = frozenset({R.UNHANDLED, R.SERVICE_UNAVAILABLE})


@dataclass(frozen=True)
class Message:
    service: str
    operation: str
    data: Data = field(default_factory=dict)


@dataclass(frozen=True)
class Packet:
    """A packet's envelope; each of `messages` is a message, or the refusal of one that
    is not (it is answered with that refusal, in its place)."""

    packet_id: int | None
    session_id: str
    game_id: str
    messages: list[Message | DomainError]


def read_packet(body: bytes) -> Packet:
    """The packet in `body`; refused whole (40600, 40408, 40001) when there is none."""
    return packet_of(read_object(body))


def read_object(body: bytes) -> Data:
    """The JSON object in `body`: 40600 too large, 40408 not JSON, 40001 not an object."""
    if len(body) > MAX_PACKET_BYTES:
        raise DomainError(R.MESSAGE_TOO_LARGE, f"a packet is at most {MAX_PACKET_BYTES} bytes")
    try:
        found = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DomainError(R.JSON_PARSING_ERROR, f"the packet is not JSON: {exc}") from None
    if not isinstance(found, dict):
        raise DomainError(R.INVALID_REQUEST, "a packet is a JSON object")
    return found


def packet_of(packet: Data) -> Packet:
    """The packet `packet` holds (40001, 40600 when it holds none)."""
    messages = packet.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DomainError(R.INVALID_REQUEST, "a packet has a non-empty list of messages")
    if len(messages) > MAX_MESSAGES:
        raise DomainError(R.MESSAGE_TOO_LARGE, f"a packet has at most {MAX_MESSAGES} messages")
    packet_id = packet.get("packetId")
    if packet_id is not None and (type(packet_id) is not int or packet_id < 0):
        raise DomainError(R.INVALID_REQUEST, "packetId is a whole number, 0 or more")
    session_id = packet.get("sessionId") or ""
    game_id = packet.get("gameId") or packet.get("appId") or ""
    if not isinstance(session_id, str) or not isinstance(game_id, str):
        raise DomainError(R.INVALID_REQUEST, "sessionId and gameId are strings")
    return Packet(packet_id, session_id, game_id, [_message(m) for m in messages])


def refused_whole(found: Data, error: DomainError, entries: str) -> dict[str, Any]:
    """A packet refused as a whole: its `packetId` echoed when it has one, and the
    refusal in the place of each of its messages (a library calls back each)."""
    packet_id = found.get("packetId")
    messages = found.get("messages")
    count = len(messages) if isinstance(messages, list) and messages else 1
    return {
        "packetId": packet_id if type(packet_id) is int else None,
        entries: [refusal(error)] * count,
    }


def request_id(body: bytes, place: int) -> str:
    """The name of the redemption the message at `place` of the packet in `body` asks
    for: the packet sent again, the same bytes, is the same redemption, whatever was
    kept of its first answer (a packet's bytes hold its session and its packet id)."""
    return f"bc:{hashlib.sha256(body).hexdigest()[:40]}:{place}"


def _message(message: object) -> Message | DomainError:
    if not isinstance(message, dict):
        return DomainError(R.INVALID_REQUEST, "a message is a JSON object")
    service, operation = message.get("service"), message.get("operation")
    if not isinstance(service, str) or not isinstance(operation, str):
        return DomainError(R.INVALID_REQUEST, "a message names its service and operation")
    data = message.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return DomainError(
            R.INVALID_PARAMETER_TYPE, f"{service!r}.{operation!r}: data is an object"
        )
    return Message(service, operation, data)


def operation_of(operations: Mapping[tuple[str, str], T], message: Message) -> T:
    """What carries out `message`: 40443 a service not served, 40333 an operation of it."""
    if not any(service == message.service for service, _ in operations):
        raise DomainError(R.INVALID_SERVICE_CODE, f"no service {message.service!r} here")
    operation = operations.get((message.service, message.operation))
    if operation is None:
        raise DomainError(
            R.INVALID_OPERATION, f"{message.service} has no operation {message.operation!r} here"
        )
    return operation


async def entry_of(message: Message, work: Callable[[], Awaitable[object]]) -> Entry:
    """The entry answering `message`: what `work` gives, or its refusal (a fault of the
    service logged, and answered as one)."""
    try:
        return success(await work())
    except DomainError as error:
        return refusal(error)
    except Exception:
        log.exception("a front door message failed", operation=message.operation)
        return refusal(DomainError(R.UNHANDLED, "the service failed on this message"))


def success(data: object) -> Entry:
    return {"status": 200, "data": data}


def refusal(error: DomainError) -> Entry:
    """An error entry: 403 for a refusal that ends the session, 500 or 503 for a fault
    of the service, else 400, as brainCloud answers."""
    if error.reason in _SESSION_REASONS:
        status = 403
    elif error.reason in _SERVER_FAULTS:
        status = 503 if error.reason is R.SERVICE_UNAVAILABLE else 500
    else:
        status = 400
    return {
        "status": status,
        "reason_code": int(error.reason),
        "status_message": error.message,
        "severity": "ERROR",
    }


def text(data: Data, name: str, *, limit: int = 1024) -> str | None:
    """`data[name]`, a string, or None when it is missing or empty; 40359 when it is of
    another type."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise DomainError(R.INVALID_PARAMETER_TYPE, f"{name} is a string")
    if len(value) > limit:
        raise DomainError(R.INVALID_PARAMETER_VALUE, f"{name} is at most {limit} characters")
    return value


def required_text(data: Data, name: str, *, limit: int = 1024) -> str:
    """`data[name]`, a string; 40358 when it is missing or empty."""
    value = text(data, name, limit=limit)
    if value is None:
        raise DomainError(R.MISSING_REQUIRED_PARAMETER, f"{name} is required")
    return value


def code_of(record: CodeRecord, app_id: str) -> Data:
    """A code as brainCloud's libraries read it: the reference's field names, the
    redeeming user as `redeemedByProfileId`."""
    fields = record.model_dump(mode="json", exclude={"redeemedByUserId"})
    return {
        "gameId": app_id,
        **fields,
        "redeemedByProfileId": record.redeemedByUserId,
        "redeemedByProfileName": "",
    }


def outcome_of(record: RedemptionRecord, app_id: str) -> Data:
    """The code a redemption ended with, or holds while under way (InProgress for an
    asynchronous campaign); its refusal raised, or 40750 while it is still queued."""
    if record.code is not None and record.status in (
        RedemptionStatus.REDEEMED,
        RedemptionStatus.IN_PROGRESS,
    ):
        return code_of(record.code.model_copy(update={"redemptionId": record.redemptionId}), app_id)
    if not record.status.is_terminal:
        raise DomainError(
            R.REDEMPTION_IN_PROGRESS, f"redemption {record.redemptionId} is under way"
        )
    reason = ReasonCode(record.reasonCode or R.REDEMPTION_FAILED)
    raise DomainError(reason, record.message or record.status.value)
