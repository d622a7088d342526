"""End-to-end: the whole server on real sockets, clients joining through the SIP path. SQLite only: the
database is not what these tests are about (the API suite covers PostgreSQL)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiortc import RTCSessionDescription

from gateway.app import SIP_STACK
from sfu.aiortc_adapter import gather_host_candidates
from tests.conftest import Api
from tests.e2e.sipclient import Call, SipClient
from tests.sfu.clients import WebRtcClient


@pytest.fixture
def database_url(tmp_path: Any) -> str:
    return f"sqlite:///{tmp_path}/meetings.db"


@dataclass
class Member:
    """A browser-alike: aiortc media behind a SIP-over-WebSocket user agent."""

    media: WebRtcClient
    sip: SipClient
    call: Call | None = None

    async def join(self, extension: str) -> Call:
        pc = self.media.pc
        gather_host_candidates(pc, ["127.0.0.1"], None)
        await pc.setLocalDescription(await pc.createOffer())

        async def apply(answer: bytes) -> None:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))

        self.call = await self.sip.invite(extension, pc.localDescription.sdp.encode(), on_answer=apply)
        return self.call

    async def answer_offer(self, offer: bytes) -> bytes:
        pc = self.media.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.decode(), type="offer"))
        gather_host_candidates(pc, ["127.0.0.1"], None)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp.encode()

    async def offer_again(self) -> bytes:
        """A re-INVITE without SDP (his room moved to another media worker): where a browser offers afresh with an ICE
        restart, this peer offers from a new peer connection (`WebRtcClient.restart`)."""
        await self.media.restart()
        pc = self.media.pc
        gather_host_candidates(pc, ["127.0.0.1"], None)
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp.encode()

    async def accept_answer(self, answer: bytes) -> None:
        await self.media.pc.setRemoteDescription(RTCSessionDescription(sdp=answer.decode(), type="answer"))

    def messages(self, kind: str) -> list[dict[str, Any]]:
        assert self.call is not None
        return [message for message in self.call.messages if message["type"] == kind]

    async def close(self) -> None:
        await self.media.close()
        await self.sip.close()


class Room:
    def __init__(self, api: Api, session: aiohttp.ClientSession) -> None:
        self.api = api
        self.session = session
        self.members: list[Member] = []

    @property
    def ws_url(self) -> str:
        return str(self.api.client.make_url("/api/asterisk/ws"))

    @property
    def udp_address(self) -> tuple[str, int]:
        udp = self.api.client.app[SIP_STACK].udp
        assert udp is not None
        return ("127.0.0.1", udp.port)

    async def member(self, credentials: tuple[str, str], tone: float | None, colour: str | None) -> Member:
        sip = SipClient(*credentials, self.api.services.settings.sip.domain)
        await sip.connect_ws(self.session, self.ws_url)
        registered = await sip.register()
        assert registered.status == 200, registered.first_line
        member = Member(WebRtcClient(credentials[0], tone, colour), sip)
        sip.on_offer = member.answer_offer
        sip.on_reoffer = member.offer_again
        sip.on_answer = member.accept_answer
        self.members.append(member)
        return member


def guest_credentials(meeting: dict[str, Any]) -> tuple[str, str]:
    username, password = base64.b64decode(meeting["guest_sip_authorization"]).decode().split(":", 1)
    return username, password


async def user_line(api: Api, token: str) -> tuple[str, str]:
    me = await api.call("GET", "/api/confd/1.1/users/me", token)
    return me["sip"]["username"], me["sip"]["password"]


@pytest.fixture
async def room(api: Api) -> AsyncIterator[Room]:
    async with aiohttp.ClientSession() as session:
        handle = Room(api, session)
        yield handle
        for member in handle.members:
            await member.close()
