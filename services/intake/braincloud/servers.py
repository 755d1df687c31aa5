"""`/s2sdispatcher`: brainCloud's server-to-server protocol, for a game's own servers.

Two forms. A session: packet 0 authenticates (`authenticationV2`/`AUTHENTICATE` with
`serverName` and `serverSecret`) and is answered with a `sessionId` and the
`heartbeatSeconds` to keep it with; each later packet names the session and carries
one message (`heartbeat`/`HEARTBEAT` keeps it). A session's last answer is kept, as
a client's is. Or stateless: one request of `{appId, serverName, serverSecret,
service, operation, data}`, answered with its one entry.

A server acts for any profile, as an admin and fulfillment key would, within the
campaigns and handlers `REDEEM_BRAINCLOUD_SERVERS` limits it to.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError

from services.intake.admin import Admin
from services.intake.braincloud.packets import (
    Data,
    Entry,
    Message,
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
from services.intake.generation import Generation
from services.intake.paging import MAX_PAGE, Contexts, PageQuery
from services.intake.queries import Queries
from services.intake.redemptions import Redeemer
from services.intake.schemas import (
    ActivateIn,
    AddCodeIn,
    CampaignIn,
    CampaignList,
    CampaignOut,
    CampaignPage,
    GenerateIn,
    InvalidateIn,
    JobOut,
    UpdateCustomInfoIn,
)
from shared.clock import Clock
from shared.domain.codes import Code
from shared.domain.fulfillment import AsyncResponse
from shared.domain.identifiers import printable
from shared.domain.profiles import Apps, Server, Servers, Session, expiry, new_session_id
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.messages import CodeRecord, RedeemCommand, describe
from shared.ports.profiles import Profiles
from shared.service.attempt_outcomes import AttemptOutcomes

log = structlog.get_logger()
R = ReasonCode
B = TypeVar("B", bound=BaseModel)
AUTHENTICATE = ("authenticationV2", "AUTHENTICATE")
HEARTBEAT = ("heartbeat", "HEARTBEAT")


@dataclass(frozen=True)
class _Call:
    """One message being carried out for a server, for the app it named."""

    server: Server
    app_id: str
    body: bytes
    place: int
    client_address: str | None

    @property
    def by(self) -> str:
        return f"server:{self.server.name}"

    def code(self, code: Code) -> Data:
        return code_of(CodeRecord.of(code), self.app_id)


Operation = Callable[["ServerDoor", _Call, Data], Awaitable[object]]


class ServerDoor:
    """Answers the servers of `REDEEM_BRAINCLOUD_SERVERS`."""

    def __init__(
        self,
        servers: Servers,
        apps: Apps,
        profiles: Profiles,
        admin: Admin,
        generation: Generation,
        queries: Queries,
        redeemer: Redeemer,
        attempts: AttemptOutcomes,
        contexts: Contexts,
        clock: Clock,
        *,
        session_expiry_s: int,
        wait_s: float,
    ) -> None:
        self._servers = servers
        self._apps = apps
        self._profiles = profiles
        self._admin = admin
        self._generation = generation
        self._queries = queries
        self._redeemer = redeemer
        self._attempts = attempts
        self._contexts = contexts
        self._clock = clock
        self._expiry_s = session_expiry_s
        self._wait_s = wait_s

    @property
    def heartbeat_s(self) -> int:
        """How often a server heartbeats its session: well within its expiry."""
        return max(1, self._expiry_s // 2)

    async def answer(self, body: bytes, *, client_address: str | None) -> dict[str, Any]:
        """The answer to the packet (or stateless request) in `body`: always one, a fault
        of the service included (503 in each entry)."""
        try:
            found = read_object(body)
        except DomainError as error:
            return {"packetId": None, "messageResponses": [refusal(error)]}
        try:
            if "messages" not in found and "service" in found:
                return await self._stateless(found, body, client_address)
            return await self._packet(found, body, client_address)
        except Exception:
            log.exception("a front door packet failed")
            unavailable = DomainError(R.SERVICE_UNAVAILABLE, "the service failed: send it again")
            return refused_whole(found, unavailable, "messageResponses")

    async def _stateless(self, request: Data, body: bytes, client_address: str | None) -> Entry:
        """One request naming its server, its app, its operation and its data: its one
        entry."""
        try:
            server = self._admit(request)
            app_id = self._app_id(request)
            service, operation = request.get("service"), request.get("operation")
            data = request.get("data") or {}
            if not isinstance(service, str) or not isinstance(operation, str):
                raise DomainError(R.INVALID_REQUEST, "a request names its service and operation")
            if not isinstance(data, dict):
                raise DomainError(R.INVALID_PARAMETER_TYPE, "data is an object")
        except DomainError as error:
            return refusal(error)
        message = Message(service, operation, data)
        return await self._entry(_Call(server, app_id, body, 0, client_address), message)

    async def _packet(self, found: Data, body: bytes, client_address: str | None) -> dict[str, Any]:
        try:
            packet = packet_of(found)
        except DomainError as error:
            return refused_whole(found, error, "messageResponses")
        first = packet.messages[0]
        if isinstance(first, Message) and (first.service, first.operation) == AUTHENTICATE:
            entry = await entry_of(first, lambda: self._open(first.data))
            alone = DomainError(R.INVALID_REQUEST, "a packet that authenticates holds nothing else")
            rest = [refusal(alone)] * (len(packet.messages) - 1)
            return {"packetId": packet.packet_id, "messageResponses": [entry, *rest]}
        try:
            session, server = await self._session(packet.session_id)
        except DomainError as error:  # the session is gone: said at the top, as the clients read it
            return {
                "packetId": packet.packet_id,
                **refusal(error),
                "messageResponses": [refusal(error)] * len(packet.messages),
            }
        if packet.packet_id is not None and (kept := session.replay(packet.packet_id)):
            answer: dict[str, Any] = json.loads(kept)
            return answer
        entries = [
            refusal(m)
            if isinstance(m, DomainError)
            else await self._entry(_Call(server, session.app_id, body, n, client_address), m)
            for n, m in enumerate(packet.messages)
        ]
        answer = {"packetId": packet.packet_id, "messageResponses": entries}
        if packet.packet_id is not None:
            at = expiry(self._clock(), self._expiry_s)
            await self._profiles.keep_session(
                session.session_id, at, packet.packet_id, json.dumps(answer)
            )
        return answer

    def _admit(self, data: Data) -> Server:
        name = required_text(data, "serverName", limit=128)
        return self._servers.admit(name, required_text(data, "serverSecret", limit=1024))

    def _app_id(self, data: Data) -> str:
        """The app a server acts in (`appId`): one of `REDEEM_BRAINCLOUD_APPS` (40316)."""
        return self._apps.get(required_text(data, "appId", limit=128)).app_id

    async def _open(self, data: Data) -> Data:
        """A server's session, for the server name and secret and the app `data` gives."""
        server = self._admit(data)
        session = Session(
            new_session_id(),
            self._app_id(data),
            expiry(self._clock(), self._expiry_s),
            server_name=server.name,
        )
        await self._profiles.open_session(session)
        return {"sessionId": session.session_id, "heartbeatSeconds": self.heartbeat_s}

    async def _session(self, session_id: str) -> tuple[Session, Server]:
        """The server session named, alive; 40365 otherwise (none, expired, or of a
        server no longer configured)."""
        session = await self._profiles.get_session(session_id) if session_id else None
        server = self._servers.get(session.server_name or "") if session else None
        if session is None or server is None:
            raise DomainError(R.SERVER_SESSION_EXPIRED, "no such server session: authenticate")
        session.check_alive(self._clock())
        return session, server

    async def _entry(self, call: _Call, message: Message) -> Entry:
        async def work() -> object:
            operation = operation_of(_OPERATIONS, message)
            return await operation(self, call, message.data)

        return await entry_of(message, work)

    async def _heartbeat(self, _call: _Call, _data: Data) -> None:
        return None

    async def _add_code(self, call: _Call, data: Data) -> Data:
        code_type, body = _in_campaign(call, data, AddCodeIn)
        code = await self._admin.add_code(
            code_type, body.scan_code, CodeState(body.code_state), body.custom_code_info
        )
        return _response(call.code(code))

    async def _activate(self, call: _Call, data: Data) -> Data:
        scan_code = required_text(data, "scanCode", limit=128)
        code_type, body = _in_campaign(call, _without(data, "scanCode"), ActivateIn)
        code = await self._admin.activate(code_type, scan_code, body.custom_code_info, call.by)
        return _response(call.code(code))

    async def _invalidate(self, call: _Call, data: Data) -> Data:
        scan_code = required_text(data, "scanCode", limit=128)
        code_type, body = _in_campaign(call, _without(data, "scanCode"), InvalidateIn)
        code = await self._admin.invalidate(code_type, scan_code, body.invalidation_reason, call.by)
        return _response(call.code(code))

    async def _update_custom_info(self, call: _Call, data: Data) -> Data:
        scan_code = required_text(data, "scanCode", limit=128)
        code_type, body = _in_campaign(call, _without(data, "scanCode"), UpdateCustomInfoIn)
        code = await self._admin.update_custom_info(
            code_type, scan_code, body.version, body.custom_code_info, call.by
        )
        return _response(call.code(code))

    async def _generate(self, call: _Call, data: Data, *, inline: bool) -> Data:
        details = data.get("algorithmDetailsJson")
        if isinstance(details, str):  # brainCloud's libraries send it as JSON text
            data = {**data, "algorithmDetailsJson": _json_object(details, "algorithmDetailsJson")}
        code_type, body = _in_campaign(
            call, {**_without(data, "emailAddress"), "inline": inline}, GenerateIn
        )
        job, codes = await self._generation.generate(code_type, body)
        if inline:
            return _response({"generatedScanCodes": codes})
        return _response(JobOut.of(job).model_dump(mode="json"))

    async def _generate_codes(self, call: _Call, data: Data) -> Data:
        return await self._generate(call, data, inline=False)

    async def _generate_inline(self, call: _Call, data: Data) -> Data:
        return await self._generate(call, data, inline=True)

    async def _add_shared_campaign(self, call: _Call, data: Data) -> Data:
        """`SYS_ADD_MULTI_USE_CODE_TYPE`: a shared campaign, its options in `jsonOptions`."""
        code_type = required_text(data, "codeType", limit=128)
        options = data.get("jsonOptions")
        if options is None:
            options = {}
        if isinstance(options, str):
            options = _json_object(options, "jsonOptions")
        if not isinstance(options, dict):
            raise DomainError(R.INVALID_PARAMETER_TYPE, "jsonOptions is an object")
        fields = {**options, "codeType": code_type, "codeUseType": "MULTI"}
        body = _validated(CampaignIn, fields)
        campaign = await self._admin.create_campaign(body.domain_fields(), call.server.grant)
        return _response(CampaignOut.of(campaign).model_dump(mode="json"))

    async def _campaign_page(self, call: _Call, data: Data) -> Data:
        """`SYS_GET_CODE_TYPE_PAGE`: `context` is `{pagination, searchCriteria}`."""
        context = data.get("context")
        if isinstance(context, str):
            context = _json_object(context, "context")
        if not isinstance(context, dict):
            raise DomainError(R.MISSING_REQUIRED_PARAMETER, "context is required")
        return await self._page(call, _page_query(context))

    async def _campaign_page_offset(self, call: _Call, data: Data) -> Data:
        """`SYS_GET_CODE_TYPE_PAGE_OFFSET`: the page `pageOffset` away from `context`'s."""
        context = required_text(data, "context", limit=4096)
        offset = data.get("pageOffset", 0)
        if type(offset) is not int or not -MAX_PAGE <= offset <= MAX_PAGE:
            raise DomainError(R.INVALID_PARAMETER_TYPE, "pageOffset is a whole number of pages")
        return await self._page(call, self._contexts.load(context).moved(offset))

    async def _page(self, call: _Call, query: PageQuery) -> Data:
        items, count = await self._admin.campaigns(query, call.server.grant)
        page = CampaignList(
            context=self._contexts.dump(query), results=CampaignPage.of(query, items, count)
        )
        return _response(page.model_dump(mode="json"))

    async def _async_response(self, call: _Call, data: Data) -> Data:
        """`PROCESS_ASYNCHRONOUS_RESPONSE` for the attempt the code (of `profileId`'s, in a
        shared campaign) is in."""
        code_type = required_text(data, "codeType", limit=128)
        scan_code = required_text(data, "scanCode", limit=128)
        call.server.grant.check_campaign(code_type)
        user = _profile(data)
        if user is not None:
            await self._check_profile(call, user)
        code = await self._admin.code(code_type, scan_code, user=user)
        if code.redemption_id is None:
            raise DomainError(R.REDEMPTION_CODE_NOT_IN_PROGRESS, "the code is in no redemption")
        attempt = data.get("attempt")
        if type(attempt) is not int or attempt < 0:
            raise DomainError(R.INVALID_PARAMETER_TYPE, "attempt is a whole number, 0 or more")
        if "asyncResponse" not in data:
            raise DomainError(R.MISSING_REQUIRED_PARAMETER, "asyncResponse is required")
        answer = AsyncResponse(
            redemption_id=code.redemption_id,
            attempt=attempt,
            response=data["asyncResponse"],
            scan_code=scan_code,
            redemption_code_id=text(data, "redemptionCodeId", limit=128),
            code_type=code_type,
        )
        code = await self._attempts.respond(answer, call.server.grant)
        return _response(call.code(code))

    async def _redeem(self, call: _Call, data: Data) -> Data:
        """`REDEEM_CODE` for `profileId`: as a client's, through the intake."""
        user = await self._check_profile(call, _required_profile(data))
        info = data.get("customRedemptionInfo")
        if info is not None and not isinstance(info, dict):
            raise DomainError(R.INVALID_PARAMETER_TYPE, "customRedemptionInfo is an object")
        command = _validated(
            RedeemCommand,
            {
                "userId": user,
                "scanCode": required_text(data, "scanCode", limit=128),
                "codeType": text(data, "codeType", limit=128),
                "customRedemptionInfo": info or None,
                "requestId": request_id(call.body, call.place),
            },
        )
        job, record = await self._redeemer.redeem(
            command,
            self._wait_s,
            call.server.grant,
            key_id=call.by,
            client_address=call.client_address,
        )
        if record is None:
            raise DomainError(
                R.REDEMPTION_IN_PROGRESS, f"redemption {job.redemptionId} is under way"
            )
        return _response(outcome_of(record, call.app_id))

    async def _redeemed_codes(self, call: _Call, data: Data) -> Data:
        user = await self._check_profile(call, _required_profile(data))
        codes = await self._queries.redeemed_codes(
            user, text(data, "codeType", limit=128), call.server.grant
        )
        return _response({"codes": [call.code(code) for code in codes]})

    async def _check_profile(self, call: _Call, profile_id: str) -> str:
        """`profile_id`, a profile of the app the server acts in (40446 otherwise)."""
        profile = await self._profiles.get_profile(profile_id)
        if profile is None or profile.app_id != call.app_id:
            raise DomainError(R.PROFILE_NOT_FOUND, f"app {call.app_id} has no profile {profile_id}")
        return profile_id


_OPERATIONS: dict[tuple[str, str], Operation] = {
    HEARTBEAT: ServerDoor._heartbeat,
    ("redemptionCode", "ADD_CODE"): ServerDoor._add_code,
    ("redemptionCode", "ACTIVATE_CODE"): ServerDoor._activate,
    ("redemptionCode", "INVALIDATE_CODE"): ServerDoor._invalidate,
    ("redemptionCode", "UPDATE_CUSTOM_INFO"): ServerDoor._update_custom_info,
    ("redemptionCode", "GENERATE_CODES"): ServerDoor._generate_codes,
    ("redemptionCode", "GENERATE_CODES_INLINE"): ServerDoor._generate_inline,
    ("redemptionCode", "SYS_ADD_MULTI_USE_CODE_TYPE"): ServerDoor._add_shared_campaign,
    ("redemptionCode", "SYS_GET_CODE_TYPE_PAGE"): ServerDoor._campaign_page,
    ("redemptionCode", "SYS_GET_CODE_TYPE_PAGE_OFFSET"): ServerDoor._campaign_page_offset,
    ("redemptionCode", "PROCESS_ASYNCHRONOUS_RESPONSE"): ServerDoor._async_response,
    ("redemptionCode", "REDEEM_CODE"): ServerDoor._redeem,
    ("redemptionCode", "GET_REDEEMED_CODES"): ServerDoor._redeemed_codes,
}


def _response(result: object) -> Data:
    """A server operation's result, under `response` as brainCloud's S2S answers are."""
    return {"response": result}


def _in_campaign(call: _Call, data: Data, model: type[B]) -> tuple[str, B]:
    """The campaign `data` names (within the server's reach) and the rest of it as `model`."""
    code_type = required_text(data, "codeType", limit=128)
    call.server.grant.check_campaign(code_type)
    return code_type, _validated(model, _without(data, "codeType"))


def _validated(model: type[B], data: Data) -> B:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise DomainError(R.INVALID_PARAMETER_VALUE, describe(exc)) from None


def _without(data: Data, *names: str) -> Data:
    return {k: v for k, v in data.items() if k not in names}


def _json_object(value: str, name: str) -> Data:
    try:
        found = json.loads(value)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise DomainError(R.INVALID_PARAMETER_VALUE, f"{name} is a JSON object")
    return found


def _profile(data: Data) -> str | None:
    """`profileId`, if given: the user a server acts for (printable, as any user id)."""
    profile = text(data, "profileId", limit=128)
    if profile is not None:
        try:
            printable(profile)
        except ValueError as exc:
            raise DomainError(R.INVALID_PARAMETER_VALUE, f"profileId {exc}") from None
    return profile


def _required_profile(data: Data) -> str:
    profile = _profile(data)
    if profile is None:
        raise DomainError(R.MISSING_REQUIRED_PARAMETER, "profileId is required")
    return profile


_SEARCH = {"codeUseType": str, "validNow": bool, "isDisabled": bool}


def _page_query(context: Data) -> PageQuery:
    """The page `{pagination: {rowsPerPage, pageNumber}, searchCriteria}` asks for."""
    pagination = context.get("pagination") or {}
    criteria = context.get("searchCriteria") or {}
    if not isinstance(pagination, dict) or not isinstance(criteria, dict):
        raise DomainError(R.INVALID_PARAMETER_TYPE, "pagination and searchCriteria are objects")
    rows, page = pagination.get("rowsPerPage", 50), pagination.get("pageNumber", 1)
    if type(rows) is not int or not 1 <= rows <= 500 or type(page) is not int:
        raise DomainError(R.INVALID_PARAMETER_VALUE, "rowsPerPage is 1 to 500, pageNumber a page")
    for name, value in criteria.items():
        kind = _SEARCH.get(name)
        if kind is None or type(value) is not kind:
            names = ", ".join(_SEARCH)
            raise DomainError(R.INVALID_PARAMETER_VALUE, f"searchCriteria may name {names}")
    use = criteria.get("codeUseType")
    if use not in (None, "SINGLE", "MULTI"):
        raise DomainError(R.INVALID_PARAMETER_VALUE, "codeUseType is SINGLE or MULTI")
    return PageQuery(rows, page, use, criteria.get("validNow"), criteria.get("isDisabled"))
