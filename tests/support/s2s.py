"""A client of brainCloud's server-to-server protocol, as the official S2S libraries speak
it: a session opened by packet 0 (`serverName`, `serverSecret`), packets numbered on
from the answer's `packetId`, one message a packet, heartbeats; or the stateless form,
one request naming the server."""

from __future__ import annotations

from typing import Any

import httpx

Entry = dict[str, Any]


class S2S:
    def __init__(self, http: httpx.AsyncClient, app_id: str, name: str, secret: str) -> None:
        self.http = http
        self.app_id = app_id
        self.name = name
        self.secret = secret
        self.session_id: str | None = None
        self.heartbeat_s: int | None = None
        self.packet_id = 0
        self.last_packet: dict[str, Any] | None = None

    async def authenticate(self) -> Entry:
        data = {"appId": self.app_id, "serverName": self.name, "serverSecret": self.secret}
        packet = {
            "packetId": 0,
            "messages": [
                {"service": "authenticationV2", "operation": "AUTHENTICATE", "data": data}
            ],
        }
        answer = await self.post(packet)
        [entry] = answer["messageResponses"]
        if entry["status"] == 200:
            self.session_id = entry["data"]["sessionId"]
            self.heartbeat_s = entry["data"]["heartbeatSeconds"]
            self.packet_id = answer["packetId"] + 1  # numbered on from the answer's
        return dict(entry)

    async def call(self, service: str, operation: str, data: dict[str, Any] | None = None) -> Entry:
        """One message in the session's next packet: its entry."""
        message: dict[str, Any] = {"service": service, "operation": operation}
        if data is not None:
            message["data"] = data
        packet = {"packetId": self.packet_id, "sessionId": self.session_id, "messages": [message]}
        self.packet_id += 1
        return await self.entry(packet)

    async def redemption(self, operation: str, **data: Any) -> Entry:
        return await self.call("redemptionCode", operation, data)

    async def heartbeat(self) -> Entry:
        return await self.call("heartbeat", "HEARTBEAT")

    async def resend(self) -> dict[str, Any]:
        """The last packet again, as it was (an answer lost on the way)."""
        assert self.last_packet is not None
        return await self.post(self.last_packet)

    async def entry(self, packet: dict[str, Any]) -> Entry:
        answer = await self.post(packet)
        [entry] = answer["messageResponses"]
        return dict(entry)

    async def post(self, packet: dict[str, Any]) -> dict[str, Any]:
        self.last_packet = packet
        answer = await self.http.post("/s2sdispatcher", json=packet)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def stateless(
        self, service: str, operation: str, data: dict[str, Any], secret: str | None = None
    ) -> Entry:
        request = {
            "appId": self.app_id,
            "serverName": self.name,
            "serverSecret": self.secret if secret is None else secret,
            "service": service,
            "operation": operation,
            "data": data,
        }
        answer = await self.http.post("/s2sdispatcher", json=request)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())
