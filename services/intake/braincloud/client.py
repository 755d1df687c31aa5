"""`/dispatcherv2`: brainCloud's client protocol, as its official libraries speak it.

A packet is checked whole first (its app, its `X-SIG`, its session), then each message
is carried out in order and answered in its place; a refusal is an entry, never an
HTTP error, since the libraries stall for good on one. The answer to a session's last
packet is kept with the session: the same packet sent again (a library resends after
15 s without an answer) is answered with it and carried out no second time, and a
redemption is named by its session, packet and place, so that even a packet resent
before its first answer was kept redeems once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from pydantic import ValidationError

from services.intake.braincloud.packets import (
    Data,
    Entry,
    Message,
    Packet,
    code_of,
    entry_of,
    operation_of,
    outcome_of,
    packet_of,
    read_object,
    refusal,
    refused_whole,
    request_id,
    required_text,
    text,
)
from services.intake.queries import Queries
from services.intake.redemptions import Redeemer
from shared.clock import Clock, new_id, to_ms
from shared.domain.identifiers import printable
from shared.domain.profiles import (
    App,
    Apps,
    IdentityKind,
    Profile,
    Session,
    expiry,
    hash_password,
    new_session_id,
    password_matches,
    signature_matches,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.messages import CodeRecord, RedeemCommand, describe
from shared.ports.profiles import Profiles

log = structlog.get_logger()
R = ReasonCode
T = TypeVar("T")
_HASHING = 2  # passwords hashed at once by an intake
AUTHENTICATE = ("authenticationV2", "AUTHENTICATE")


@dataclass
class _Call:
    """One message being carried out: the packet's app and session (a packet that
    authenticates gives the messages after it the new session)."""

    app: App
    body: bytes
    session: Session | None
    client_address: str | None
    deadline: float  # when the packet's redemptions stop waiting for their outcomes

    def wait_s(self) -> float:
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def profile_id(self) -> str:
        if self.session is None or self.session.profile_id is None:
            raise DomainError(R.NO_SESSION, "no session: authenticate first")
        return self.session.profile_id


Operation = Callable[["ClientDoor", _Call, int, Data], Awaitable[object]]


class ClientDoor:
    """Answers client packets for the apps of `REDEEM_BRAINCLOUD_APPS`."""

    def __init__(
        self,
        apps: Apps,
        profiles: Profiles,
        redeemer: Redeemer,
        queries: Queries,
        clock: Clock,
        *,
        session_expiry_s: int,
        wait_s: float,
        max_kill_count: int,
    ) -> None:
        self._apps = apps
        self._profiles = profiles
        self._redeemer = redeemer
        self._queries = queries
        self._clock = clock
        self._expiry_s = session_expiry_s
        self._wait_s = wait_s
        self._max_kill_count = max_kill_count
        self._hashing = asyncio.Semaphore(_HASHING)

    async def answer(
        self,
        body: bytes,
        *,
        app_id: str | None,
        signature: str | None,
        client_address: str | None,
    ) -> dict[str, Any]:
        """The answer to the packet in `body`, sent with the `X-APPID` and `X-SIG`
        headers given: always one, a fault of the service included (503 in each entry)."""
        try:
            found = read_object(body)
        except DomainError as error:
            return {"packetId": None, "responses": [refusal(error)]}
        try:
            packet = packet_of(found)
        except DomainError as error:
            return refused_whole(found, error, "responses")
        try:
            return await self._answer(packet, body, app_id, signature, client_address)
        except Exception:
            log.exception("a front door packet failed", packet_id=packet.packet_id)
            unavailable = DomainError(R.SERVICE_UNAVAILABLE, "the service failed: send it again")
            return _envelope(packet, [refusal(unavailable)] * len(packet.messages))

    async def _answer(
        self,
        packet: Packet,
        body: bytes,
        app_id: str | None,
        signature: str | None,
        client_address: str | None,
    ) -> dict[str, Any]:
        try:
            app = self._apps.get(app_id or packet.game_id)
            if not signature or not signature_matches(body, app.secret, signature):
                raise DomainError(R.BAD_SIGNATURE, "X-SIG is not this packet's signature")
            session = await self._session(packet, app)
        except DomainError as error:
            return _envelope(packet, [refusal(error)] * len(packet.messages))
        if session is not None and packet.packet_id is not None:
            kept = session.replay(packet.packet_id)
            if kept is not None:
                answer: dict[str, Any] = json.loads(kept)
                return answer
        deadline = asyncio.get_running_loop().time() + self._wait_s
        call = _Call(app, body, session, client_address, deadline)
        entries = [await self._entry(call, n, message) for n, message in enumerate(packet.messages)]
        answer = _envelope(packet, entries)
        if session is not None and packet.packet_id is not None:  # kept where a resend asks
            await self._profiles.keep_session(
                session.session_id,
                expiry(self._clock(), self._expiry_s),
                packet.packet_id,
                json.dumps(answer),
            )
        return answer

    async def _session(self, packet: Packet, app: App) -> Session | None:
        """The packet's session, alive (40303 past its expiry, 40304 none such); None
        for a packet sent without one."""
        if not packet.session_id:
            return None
        session = await self._profiles.get_session(packet.session_id)
        if session is None or session.app_id != app.app_id or session.profile_id is None:
            raise DomainError(R.NO_SESSION, "no such session: authenticate again")
        session.check_alive(self._clock())
        return session

    async def _entry(self, call: _Call, place: int, message: Message | DomainError) -> Entry:
        if isinstance(message, DomainError):
            return refusal(message)

        async def work() -> object:
            operation = operation_of(_OPERATIONS, message)
            if (message.service, message.operation) != AUTHENTICATE:
                call.profile_id()
            return await operation(self, call, place, message.data)

        return await entry_of(message, work)

    async def _authenticate(self, call: _Call, _place: int, data: Data) -> Data:
        """`AUTHENTICATE`: the profile of an anonymous or universal identity (created
        with `forceCreate`), and a new session for it."""
        kind = _identity_kind(required_text(data, "authenticationType"))
        external_id = text(data, "externalId", limit=128) or text(data, "anonymousId", limit=128)
        if external_id is None:
            raise DomainError(R.MISSING_REQUIRED_PARAMETER, "externalId is required")
        _printable(external_id, "externalId")
        token = text(data, "authenticationToken", limit=1024) or ""
        if kind is IdentityKind.UNIVERSAL and not token:
            raise DomainError(R.MISSING_REQUIRED_PARAMETER, "authenticationToken is required")
        profile, created = await self._profile(call.app, kind, external_id, token, data)
        now = self._clock()
        session = Session(
            new_session_id(),
            call.app.app_id,
            expiry(now, self._expiry_s),
            profile_id=profile.profile_id,
        )
        await self._profiles.open_session(session)
        call.session = session
        return {
            "sessionId": session.session_id,
            "profileId": profile.profile_id,
            "playerSessionExpiry": self._expiry_s,
            "maxKillCount": self._max_kill_count,
            "newUser": "true" if created else "false",
            "playerName": "",
            "server_time": to_ms(now),
        }

    async def _profile(
        self, app: App, kind: IdentityKind, external_id: str, token: str, data: Data
    ) -> tuple[Profile, bool]:
        """The identity's profile, and whether this call created it; 40206 none and
        not to be created, 40307 a universal identity's wrong password."""
        profile = await self._profiles.find_profile(app.app_id, kind, external_id)
        created = False
        if profile is None:
            if data.get("forceCreate") is not True:
                raise DomainError(R.MISSING_IDENTITY_ERROR, "no profile has this identity")
            secret_hash = (
                await self._hashed(hash_password, token) if kind is IdentityKind.UNIVERSAL else None
            )
            candidate = Profile(new_id(), app.app_id, kind, external_id, self._clock(), secret_hash)
            profile = await self._profiles.add_profile(candidate)
            created = profile.profile_id == candidate.profile_id
        if kind is IdentityKind.UNIVERSAL and not created:
            stored = profile.secret_hash or ""
            if not await self._hashed(password_matches, token, stored):
                raise DomainError(R.TOKEN_DOES_NOT_MATCH_USER, "wrong user id or password")
        return profile, created

    async def _hashed(self, work: Callable[..., T], *args: str) -> T:
        """`work` (scrypt, 128 MiB and a core for a while) in a thread, a few at a time."""
        async with self._hashing:
            return await asyncio.to_thread(work, *args)

    async def _heartbeat(self, _call: _Call, _place: int, _data: Data) -> None:
        """`heartbeat`/`READ`: keeps the session (each packet moves its expiry on)."""
        return None

    async def _redeem(self, call: _Call, place: int, data: Data) -> Data:
        """`REDEEM_CODE` as the session's profile: the code once the redemption ends, or
        as it stands after the wait (InProgress for an asynchronous campaign)."""
        command = _redeem_command(call, place, data)
        job, record = await self._redeemer.redeem(
            command,
            call.wait_s(),
            call.app.grant,
            key_id=f"app:{call.app.app_id}",
            client_address=call.client_address,
        )
        if record is None:
            raise DomainError(
                R.REDEMPTION_IN_PROGRESS,
                f"redemption {job.redemptionId} is under way: its code shows in"
                " GET_REDEEMED_CODES once redeemed",
            )
        return outcome_of(record, call.app.app_id)

    async def _redeemed_codes(self, call: _Call, _place: int, data: Data) -> Data:
        """`GET_REDEEMED_CODES`: the session's profile's codes, of one campaign or all."""
        code_type = text(data, "codeType", limit=128)
        codes = await self._queries.redeemed_codes(call.profile_id(), code_type, call.app.grant)
        return {"codes": [code_of(CodeRecord.of(code), call.app.app_id) for code in codes]}

    async def _not_for_clients(self, _call: _Call, _place: int, _data: Data) -> None:
        raise DomainError(
            R.INSUFFICIENT_PERMISSIONS,
            "an asynchronous response is a server's: send it over /s2sdispatcher",
        )


_OPERATIONS: dict[tuple[str, str], Operation] = {
    AUTHENTICATE: ClientDoor._authenticate,
    ("heartbeat", "READ"): ClientDoor._heartbeat,
    ("redemptionCode", "REDEEM_CODE"): ClientDoor._redeem,
    ("redemptionCode", "GET_REDEEMED_CODES"): ClientDoor._redeemed_codes,
    ("redemptionCode", "PROCESS_ASYNCHRONOUS_RESPONSE"): ClientDoor._not_for_clients,
}


def _envelope(packet: Packet, entries: list[Entry]) -> dict[str, Any]:
    return {"packetId": packet.packet_id, "responses": entries}


def _identity_kind(name: str) -> IdentityKind:
    try:
        return IdentityKind(name)
    except ValueError:
        kinds = ", ".join(kind.value for kind in IdentityKind)
        raise DomainError(
            R.INVALID_AUTHENTICATION_TYPE, f"authenticationType is one of {kinds}"
        ) from None


def _printable(value: str, name: str) -> None:
    try:
        printable(value)
    except ValueError as exc:
        raise DomainError(R.INVALID_PARAMETER_VALUE, f"{name} {exc}") from None


def _redeem_command(call: _Call, place: int, data: Data) -> RedeemCommand:
    """The redemption a `REDEEM_CODE` asks for, named by its packet and place in it (a
    packet resent is the same redemption)."""
    info = data.get("customRedemptionInfo")
    if info is not None and not isinstance(info, dict):
        raise DomainError(R.INVALID_PARAMETER_TYPE, "customRedemptionInfo is an object")
    try:
        return RedeemCommand.model_validate(
            {
                "userId": call.profile_id(),
                "scanCode": required_text(data, "scanCode", limit=128),
                "codeType": text(data, "codeType", limit=128),
                "customRedemptionInfo": info or None,
                "requestId": request_id(call.body, place),
            }
        )
    except ValidationError as exc:
        raise DomainError(R.INVALID_PARAMETER_VALUE, describe(exc)) from None
