"""The digest challenge on the wire follows `sip.digest_algorithms`: MD5 alone by default (what every phone
answers), the operator's order otherwise, each algorithm once, over UDP and WebSocket alike."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from gateway.config import Settings
from tests.conftest import Api, make_settings
from tests.e2e.conftest import Room, guest_credentials
from tests.e2e.sipclient import SipClient


@pytest.fixture(params=[None, "[SHA-256, MD5]", "[SHA-256-sess, MD5-sess, MD5]"])
def settings(request: pytest.FixtureRequest, database_url: str) -> Settings:
    if request.param is None:
        return make_settings(database_url)
    return make_settings(database_url, MEETINGS_SIP__DIGEST_ALGORITHMS=request.param)


def algorithms(challenge: Any) -> list[str]:
    return [re.search(r"algorithm=([^,\s]+)", value).group(1) for value in challenge.all("WWW-Authenticate")]  # type: ignore[union-attr]


async def test_the_challenge_lists_the_configured_algorithms_once_each(api: Api, room: Room) -> None:
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    configured = api.services.settings.sip.digest_algorithms
    udp = SipClient(*guest_credentials(meeting), api.services.settings.sip.domain)
    await udp.connect_udp(room.udp_address)
    ws = SipClient(*guest_credentials(meeting), api.services.settings.sip.domain)
    async with aiohttp.ClientSession() as session:
        await ws.connect_ws(session, room.ws_url)
        try:
            for client in (udp, ws):
                challenge = await client.register(authenticate=False)
                assert challenge.status == 401
                assert algorithms(challenge) == configured
                # the last one is what sip.js answers: MD5, whatever else is offered
                assert algorithms(challenge)[-1] == "MD5"
                assert (await client.register()).status == 200
        finally:
            await udp.close()
            await ws.close()
