"""A phone on the internet calls over SIP over TLS (sip.tls_port) with SDES-SRTP media (RTP/SAVP): it joins the
meeting as a guest, hears the room and is heard, and is hung up with a Reason over the same TLS connection when the
meeting is deleted. Where the operator refuses plain RTP, a phone that does not encrypt gets 488."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.app import SIP_STACK
from signaling.digest import DigestCredentials
from signaling.stack import CallFailed, SipStack, StackConfig
from tests.certificates import certificate_in, secure_phone_settings
from tests.conftest import Api
from tests.e2e.conftest import Room, guest_credentials
from tests.e2e.test_meeting_media import powers, record
from tests.sfu.clients import RtpPhone, SrtpPhone, tone_power
from tests.signaling.support import Accounts, Recorder


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return certificate_in(tmp_path)


@pytest.fixture
def settings(database_url: str, certificate: tuple[Path, Path]) -> Any:
    return secure_phone_settings(database_url, certificate)


async def test_a_phone_joins_over_tls_hears_the_room_and_is_hung_up(
    api: Api, room: Room, certificate: tuple[Path, Path]
) -> None:
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    speaker = await room.member(guest_credentials(meeting), 440.0, None)
    await speaker.join("meeting-guest")
    listener = api.client.app[SIP_STACK].tls
    assert listener is not None and listener.port

    trust = ssl.create_default_context(cafile=str(certificate[0]))
    phone = SipStack(StackConfig(domain="phone.test", tls_client=trust), Accounts())
    media = SrtpPhone(880.0)
    await media.open()
    handler = Recorder()
    try:
        username, password = guest_credentials(meeting)
        dialog = await phone.invite(
            f"sip:meeting-guest@localhost:{listener.port};transport=tls",
            media.offer().encode(),
            from_uri=f"sip:{username}@{api.services.settings.sip.domain}",
            credentials=DigestCredentials(username, password),
            handler=handler,
        )
        assert dialog.flow.transport == "TLS"
        seats = api.services.conferences.participants(uuid.UUID(meeting["uuid"]))
        assert {seat.kind for seat in seats} == {"webrtc", "phone"}
        answer = (dialog.initial_response.body if dialog.initial_response else b"").decode()
        assert "m=audio" in answer and " RTP/SAVP " in answer and "a=crypto:1 AES_CM_128_HMAC_SHA1_80" in answer
        media.accept(answer)
        port = int(next(line for line in answer.splitlines() if line.startswith("m=audio")).split()[1])
        media.start(("127.0.0.1", port))
        await asyncio.sleep(2.0)  # past the first mixes
        media.received.clear()
        await record([speaker], 2.0)
        heard = media.decoded().astype(np.float64)
        assert heard.size > 8000 and tone_power(heard, 440, 8000) > 0.2, "the phone does not hear the room"
        b440, b880 = powers(speaker)
        assert b880 > 0.2 and b440 < 0.02, ("the room does not hear the phone", b440, b880)
        assert media.rejected == 0

        await api.call("DELETE", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}", token, expect=204)
        await asyncio.wait_for(handler.terminated.wait(), 10)
        assert "bye" in handler.events
    finally:
        await media.close()
        await phone.close()


async def test_plain_rtp_is_refused_where_the_operator_wants_encryption(api: Api, room: Room) -> None:
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    plain = RtpPhone(None)
    await plain.open()
    phone = SipStack(StackConfig(domain="phone.test"), Accounts())
    await phone.start_udp("127.0.0.1", 0)
    try:
        username, password = guest_credentials(meeting)
        udp = api.client.app[SIP_STACK].udp
        assert udp is not None
        with pytest.raises(CallFailed) as refused:
            await phone.invite(
                f"sip:meeting-guest@127.0.0.1:{udp.port}",
                plain.offer().encode(),
                from_uri=f"sip:{username}@{api.services.settings.sip.domain}",
                credentials=DigestCredentials(username, password),
            )
        assert refused.value.response.status == 488
        assert "RTP/SAVP" in (refused.value.response.headers.get("reason") or "")
    finally:
        await plain.close()
        await phone.close()
