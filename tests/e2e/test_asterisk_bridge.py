"""The Asterisk ConfBridge bridge, against a peer that behaves as ConfBridge does toward one member
(tests/e2e/confbridge_peer.py): digest with qop=auth, plain RTP, a tone and VP8 video each way, SFU re-INVITEs
adding and removing video sources, drops and restarts; and the inbound trunk (a phone routed in by Asterisk,
trusted by address or by digest)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import aiohttp
import numpy as np
import pytest

from gateway.app import ASTERISK_BRIDGE, SIP_STACK, build_services, create_app
from gateway.bootstrap import bootstrap
from gateway.calls.bridge import BRIDGE_NAME, restrict_codecs
from gateway.events import Event
from tests.conftest import ADMIN_PASSWORD, Api, make_settings
from tests.e2e.confbridge_peer import ConfBridgePeer
from tests.e2e.conftest import Member, Room, guest_credentials
from tests.e2e.sipclient import CallRefused
from tests.e2e.workers import media_workers, new_exchange, rabbitmq_answers, remote_media_env
from tests.sfu.clients import record, tone_power
from tests.waiting import until

PEER_TONE = 660.0
MEMBER_TONE = 440.0
PASSWORD = "bridge-secret"


def bridge_env(peer_port: int, **extra: Any) -> dict[str, str]:
    env = {
        "MEETINGS_ASTERISK__ENABLED": "true",
        "MEETINGS_ASTERISK__HOST": "127.0.0.1",
        "MEETINGS_ASTERISK__PORT": str(peer_port),
        "MEETINGS_ASTERISK__PASSWORD": PASSWORD,
        "MEETINGS_ASTERISK__CODECS": "[pcmu, pcma]",
        "MEETINGS_ASTERISK__RETRY_MIN_SECONDS": "0.3",
        "MEETINGS_ASTERISK__RETRY_MAX_SECONDS": "1",
        "MEETINGS_ASTERISK__CONNECT_TIMEOUT_SECONDS": "1",
        "MEETINGS_ASTERISK__KEEPALIVE_SECONDS": "0.5",
    }
    env.update({f"MEETINGS_ASTERISK__{key.upper()}": str(value) for key, value in extra.items()})
    return env


class Servers:
    """Starts the gateway (again, on the same database, for the restart test) with given settings."""

    def __init__(self, aiohttp_client: Any, database_url: str) -> None:
        self.aiohttp_client = aiohttp_client
        self.database_url = database_url
        self.bootstrapped = False

    async def start(self, **env: str) -> Api:
        settings = make_settings(self.database_url, **env)
        services = build_services(settings)
        client = await self.aiohttp_client(create_app(settings, services))
        if not self.bootstrapped:
            await bootstrap(services, "admin", ADMIN_PASSWORD)
            self.bootstrapped = True
        api = Api(client, services)
        api.admin_token = await api.login("admin", ADMIN_PASSWORD)
        return api


@pytest.fixture
def servers(aiohttp_client: Any, database_url: str) -> Servers:
    return Servers(aiohttp_client, database_url)


@pytest.fixture
async def peer() -> AsyncIterator[ConfBridgePeer]:
    handle = ConfBridgePeer(password=PASSWORD, tone=PEER_TONE)
    await handle.start()
    yield handle
    await handle.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as handle:
        yield handle


@pytest.fixture(params=["in-process", "media-workers"])
def media_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Settings for rooms in the server's process, or in two media worker processes (over RabbitMQ)."""
    if request.param == "in-process":
        yield {}
        return
    if not rabbitmq_answers():
        pytest.skip("RabbitMQ is not answering on 127.0.0.1:5672 (.ci/run starts it)")
    exchange = new_exchange()
    with media_workers(exchange):
        yield remote_media_env(exchange)


async def join_member(api: Api, session: aiohttp.ClientSession, meeting: dict[str, Any]) -> tuple[Room, Member]:
    room = Room(api, session)
    member = await room.member(guest_credentials(meeting), MEMBER_TONE, "red")
    await member.join("meeting-guest")
    return room, member


async def member_hears(member: Member, frequency: float, seconds: float = 1.5) -> float:
    await record(member.media, seconds=seconds)
    return tone_power(member.media.recorded().astype(np.float64), frequency)


async def peer_hears(peer: ConfBridgePeer, seconds: float = 1.5) -> tuple[float, float]:
    media = peer.current.media
    media.received.clear()
    await asyncio.sleep(seconds)
    heard = media.decoded().astype(np.float64)
    assert heard.size > 8000 * seconds * 0.5, "the peer received too little audio"
    return tone_power(heard, MEMBER_TONE, 8000), tone_power(heard, PEER_TONE, 8000)


async def participants(api: Api, meeting: dict[str, Any]) -> list[dict[str, Any]]:
    found = await api.call("GET", f"/api/calld/1.0/meetings/{meeting['uuid']}/participants", api.admin_token)
    return list(found["items"])


async def delete_and_see_the_leg_end_for_good(
    api: Api, token: str, meeting: dict[str, Any], peer: ConfBridgePeer
) -> None:
    """The owner deletes the meeting: the leg gets a BYE saying why, and is not placed again."""
    call = peer.current
    await api.call("DELETE", f"/api/confd/1.1/users/me/meetings/{meeting['uuid']}", token, expect=204)
    await until(call.ended.is_set, 5, "the BYE of the deleted meeting")
    assert call.bye_reason and "meeting deleted" in call.bye_reason
    invites = len(peer.invites)
    await asyncio.sleep(1.5)
    assert len(peer.invites) == invites


async def test_bridge_carries_audio_and_video_both_ways_through_sfu_reinvites(
    servers: Servers, peer: ConfBridgePeer, session: aiohttp.ClientSession, media_env: dict[str, str]
) -> None:
    # keepalive at 5 s: a half-second one (the drop test's) can time out on a loaded machine and re-place the leg
    api = await servers.start(
        **bridge_env(peer.port, keepalive_seconds=5), MEETINGS_MEETINGS__MAX_PARTICIPANTS="2", **media_env
    )
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    await asyncio.sleep(0.5)
    assert not peer.invites, "on_first_participant: no leg before someone joins"

    room, member = await join_member(api, session, meeting)
    try:
        await until(peer.answered.is_set, 5, "the bridge's INVITE")
        # The gateway answered Asterisk's digest challenge with qop=auth, and dialed the meeting's extension.
        assert peer.challenges >= 1 and peer.refused == 0
        assert peer.authorizations[-1]["qop"] == "auth" and peer.authorizations[-1]["username"] == "meetings-gateway"
        call = peer.current
        assert call.request_uri.startswith(f"sip:wazo-meeting-{meeting['uuid']}@")
        assert "sip:meetings-gateway@" in call.from_header
        offer = peer.invites[-1].body.decode()
        assert "PCMU/8000" in offer and "opus" not in offer, "the configured codecs only"

        # The bridged leg is a participant: listed, and counted against the cap (2 here).
        seated = UUID(meeting["uuid"])
        await until(lambda: api.services.conferences.count(seated) == 2, 5, "the leg's seat (after the 200 OK)")
        listed = await participants(api, meeting)
        assert len(listed) == 2 and "Asterisk ConfBridge" in [p["caller_id_name"] for p in listed]
        status = await api.call("GET", f"/api/calld/1.0/guests/me/meetings/{meeting['uuid']}/status")
        assert status["full"] is True
        late = await room.member(guest_credentials(meeting), None, None)
        with pytest.raises(CallRefused) as refused:
            await late.join("meeting-guest")
        assert refused.value.response.status == 486

        # Audio both ways; Asterisk never gets its own tone back.
        await asyncio.sleep(1.0)
        assert await member_hears(member, PEER_TONE) > 0.2, "the member does not hear Asterisk"
        heard_member, heard_self = await peer_hears(peer)
        assert heard_member > 0.2, "Asterisk does not hear the member"
        assert heard_self < 0.02, "Asterisk got its own audio back"

        # Video: the offer has one sendrecv VP8 stream, on which Asterisk gets the current speaker (the member).
        assert "m=video " in offer and "VP8/90000" in offer
        own = call.own_video
        assert own is not None
        await until(lambda: own.colours_seen() == "red", 8, "Asterisk to see the member's video")

        # ConfBridge in SFU mode re-INVITEs when a video source joins on its side: a sendonly stream added. The
        # gateway takes it and the member's slot shows it; Asterisk gets nothing back on it.
        status, answer = await peer.reinvite(["blue"])
        assert status == 200, answer
        assert [line.split()[1] != "0" for line in answer.splitlines() if line.startswith("m=")] == [True] * 3
        await until(lambda: "blue" in member.media.colours_seen(), 8, "the member to see Asterisk's source")
        # a second source comes, then the first leaves (its m-line stays, port 0): the call goes on
        status, answer = await peer.reinvite(["blue", "green"])
        assert status == 200, answer
        await until(lambda: "green" in member.media.colours_seen(), 8, "the member to see the second source")
        status, answer = await peer.reinvite([None, "green"])
        media_lines = [line for line in answer.splitlines() if line.startswith("m=")]
        assert status == 200 and media_lines[2].split()[1] == "0" and media_lines[3].split()[1] != "0"
        sources = [source for source in call.sources if source is not None]
        assert sources and all(source.frames_decoded == 0 for source in sources), "Asterisk got its video back"
        assert own.colours_seen() == "red" and not peer.current.ended.is_set()
        heard_member, _ = await peer_hears(peer, 1.0)
        assert heard_member > 0.2, "audio stopped after the re-INVITEs"
        assert await member_hears(member, PEER_TONE, 1.0) > 0.2
        assert peer.current is call and len(peer.invites) == 1, "the leg was placed again meanwhile"

        # The member leaves: the room is empty, the leg is hung up (hangup_when_empty), no retry follows.
        assert member.call is not None
        await member.sip.bye(member.call)
        await until(lambda: call.ended.is_set(), 5, "the bridge's BYE")
        assert call.bye_reason and "room empty" in call.bye_reason
        invites = len(peer.invites)
        await asyncio.sleep(1.5)
        assert len(peer.invites) == invites
        assert not api.client.app[ASTERISK_BRIDGE].links
    finally:
        for someone in room.members:
            await someone.close()


def carrying_audio(api: Api, meeting: dict[str, Any], peer: ConfBridgePeer) -> bool:
    """The room's leg is a call of `peer`'s, up, and Asterisk's audio has reached the gateway on it."""
    link = api.client.app[ASTERISK_BRIDGE].links.get(UUID(meeting["uuid"]))
    call = link.call if link is not None else None
    if call is None or call.left:
        return False
    theirs = peer.calls.get(call.dialog.call_id)
    return theirs is not None and not theirs.ended.is_set() and call.participant.last_received_at is not None


def retry_waits(log: str) -> list[float]:
    return [float(wait) for wait in re.findall(r"next try in ([\d.]+) s", log)]


@pytest.mark.slow
async def test_asterisk_hanging_up_going_silent_restarting_or_crashing_is_noticed_and_called_again(
    servers: Servers,
    peer: ConfBridgePeer,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    media_env: dict[str, str],
) -> None:
    """Legs hung up after they worked are called again after retry_min_seconds each time; an Asterisk whose RTP
    stops is asked at once (an OPTIONS), and the leg ends within 5 s if it was restarted (481) or is gone (no
    answer), while the keepalive (30 s here) would not have noticed yet; a silent Asterisk that answers keeps it."""
    caplog.set_level(logging.INFO, logger="gateway.calls.bridge")
    env = bridge_env(
        peer.port, keepalive_seconds=30, rtp_silence_seconds=3, probe_timeout_seconds=1, retry_max_seconds=4
    )
    api = await servers.start(**env, **media_env)
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    uuid = UUID(meeting["uuid"])
    # when the leg's seat went, and who was still seated then (what the participants list shows)
    left: list[tuple[float, list[str]]] = []

    def bridge_left(event: Event) -> None:
        if event.data["caller_id_name"] == BRIDGE_NAME:
            seated = [seat.caller_id_name for seat in api.services.conferences.participants(uuid)]
            left.append((time.monotonic(), seated))

    api.services.bus.subscribe(bridge_left, "meeting_participant_left")
    _, member = await join_member(api, session, meeting)
    back: list[ConfBridgePeer] = []
    try:
        # Asterisk hangs up legs that worked (ConfBridge kicks, restarts): each is called again after 0.3 s, where
        # a backoff growing across them would wait 0.3, 0.6, 1.2 then 2.4 s.
        gaps = []
        for _ in range(4):
            await until(lambda: carrying_audio(api, meeting, peer), 5, "a leg carrying Asterisk's audio")
            invites = len(peer.invites)
            hung_up = time.monotonic()
            assert await peer.bye() == 200
            await until(lambda: len(peer.invites) > invites, 5, "the next leg")  # noqa: B023
            gaps.append(time.monotonic() - hung_up)
        print(f"BYE to the next leg's INVITE: {', '.join(f'{gap:.2f}' for gap in gaps)} s")
        assert retry_waits(caplog.text) == [0.3] * 4 and "Asterisk hung up the leg (BYE)" in caplog.text
        assert max(gaps) < 1.5, gaps

        # Asterisk goes silent but still has the call (say, on hold): one OPTIONS after 3 s, the leg stays.
        await until(lambda: carrying_audio(api, meeting, peer), 5, "the last leg carrying audio")
        call = peer.current
        left.clear()
        call.media.pause()
        await until(lambda: call.options_seen == 1, 6, "the OPTIONS probing a silent Asterisk")
        await asyncio.sleep(1.5)
        assert call.options_seen == 1 and not call.ended.is_set() and not left, "a live Asterisk lost its leg"
        assert "but it still has the call: the leg stays" in caplog.text
        assert call.media.remote is not None
        call.media.start(call.media.remote)

        # kill -9, and Asterisk is back a second later: its RTP stopped, so it is asked at once, answers 481 for
        # the call of its former life, and the leg is placed again (the keepalive would ask only after 30 s).
        await until(lambda: carrying_audio(api, meeting, peer), 5, "Asterisk's audio again")
        port = peer.port
        left.clear()
        crashed = time.monotonic()
        await peer.stop()
        await asyncio.sleep(1.0)
        back.append(ConfBridgePeer(password=PASSWORD, tone=PEER_TONE))
        await back[0].start(port)
        await until(lambda: bool(left), 10, "the leg to leave the room")
        noticed, seated = left[0][0] - crashed, left[0][1]
        print(f"a restarted Asterisk noticed {noticed:.2f} s after the crash")
        assert noticed < 5.0 and BRIDGE_NAME not in seated and back[0].stale_requests == ["OPTIONS"]
        assert "Asterisk no longer knows the call (481" in caplog.text and "it probably restarted" in caplog.text
        await until(lambda: carrying_audio(api, meeting, back[0]), 5, "the leg on the restarted Asterisk")

        # kill -9, and Asterisk stays down: the OPTIONS gets no answer within 1 s, the leg ends; the room carries
        # on; the attempts that fail wait twice as long each time; Asterisk comes back and the leg with it.
        left.clear()
        caplog.clear()
        attempts = api.client.app[ASTERISK_BRIDGE].links[uuid].attempts
        crashed = time.monotonic()
        await back[0].stop()
        await until(lambda: bool(left), 10, "the leg to leave the room")
        noticed, seated = left[0][0] - crashed, left[0][1]
        print(f"a crashed Asterisk noticed {noticed:.2f} s after the crash")
        assert noticed < 5.0 and BRIDGE_NAME not in seated
        assert "Asterisk did not answer an OPTIONS" in caplog.text and "it is down or unreachable" in caplog.text
        assert member.call is not None and not member.call.ended.is_set(), "the room must carry on"
        link = api.client.app[ASTERISK_BRIDGE].links[uuid]
        await until(lambda: link.attempts >= attempts + 3, 10, "retries while Asterisk is down")
        assert retry_waits(caplog.text)[:3] == [0.3, 0.6, 1.2], caplog.text
        back.append(ConfBridgePeer(password=PASSWORD, tone=PEER_TONE))
        await back[1].start(port)
        await until(lambda: carrying_audio(api, meeting, back[1]), 8, "the leg after Asterisk came back")
        assert await member_hears(member, PEER_TONE, 1.0) > 0.2, "the member does not hear the new leg"
        listed = await participants(api, meeting)
        assert len(listed) == 2 and BRIDGE_NAME in [p["caller_id_name"] for p in listed]
    finally:
        for handle in back:
            await handle.stop()
        await member.close()


async def test_keepalive_alone_notices_a_vanished_asterisk(
    servers: Servers, peer: ConfBridgePeer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """With the RTP-silence watch off, the OPTIONS keepalive (every 0.5 s here) still ends a leg nobody answers."""
    caplog.set_level(logging.INFO, logger="gateway.calls.bridge")
    api = await servers.start(**bridge_env(peer.port, rtp_silence_seconds=0))
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    _, member = await join_member(api, session, meeting)
    try:
        await until(lambda: carrying_audio(api, meeting, peer), 5, "the leg")
        await peer.stop()
        seated = api.services.conferences.participants
        await until(lambda: len(seated(UUID(meeting["uuid"]))) == 1, 5, "the leg to leave the room")
        assert "an OPTIONS (sent as the keepalive) within 0.5 s: it is down or unreachable" in caplog.text
        assert "without RTP" not in caplog.text
    finally:
        await member.close()


async def test_connect_always_places_legs_for_existing_meetings_also_after_a_restart(
    servers: Servers, peer: ConfBridgePeer
) -> None:
    env = bridge_env(peer.port, connect="always")
    api = await servers.start(**env)
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    await until(peer.answered.is_set, 5, "a leg with nobody in the room")
    assert f"wazo-meeting-{meeting['uuid']}" in peer.current.request_uri

    # A restart: the legs come back for the meetings that exist.
    await api.client.close()
    await until(lambda: peer.calls and all(c.ended.is_set() for c in peer.calls.values()), 5, "BYE at shutdown")
    peer.answered.clear()
    api = await servers.start(**env)
    await until(peer.answered.is_set, 5, "the leg after the restart")
    assert f"wazo-meeting-{meeting['uuid']}" in peer.current.request_uri

    # Deleting the meeting hangs the leg up for good.
    await delete_and_see_the_leg_end_for_good(api, await api.login("alice", "user-password"), meeting, peer)


async def test_trunk_peer_calls_join_the_room_and_unknown_peers_are_refused(
    servers: Servers, session: aiohttp.ClientSession
) -> None:
    trunk_peers = "[{host: 127.0.0.2}, {host: 10.20.30.40, username: pbx-trunk, password: trunk-secret}]"
    api = await servers.start(MEETINGS_ASTERISK__TRUNK_PEERS=trunk_peers)
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    other = await api.create_meeting(token, name="Other")
    udp = api.client.app[SIP_STACK].udp
    assert udp is not None
    gateway = ("127.0.0.1", udp.port)
    _, member = await join_member(api, session, meeting)

    trusted = ConfBridgePeer(tone=PEER_TONE)
    await trusted.start(host="127.0.0.2")
    digest = ConfBridgePeer(tone=None)
    await digest.start()
    stranger = ConfBridgePeer(tone=None)
    await stranger.start()
    try:
        # Trusted by address: no challenge; routed by wazo-meeting-{uuid} to that room, with the phone's caller id.
        response, call = await trusted.call(gateway, f"wazo-meeting-{meeting['uuid']}", ("Bob Phone", "1001"))
        assert response.status == 200 and call is not None
        listed = await participants(api, meeting)
        bob = next(p for p in listed if p["caller_id_number"] == "1001")
        assert bob["caller_id_name"] == "Bob Phone" and bob["user_uuid"] is None
        await asyncio.sleep(1.0)
        assert await member_hears(member, PEER_TONE, 1.0) > 0.2, "the member does not hear the trunk call"

        # Trusted by digest, from another address: by exten, to the other meeting.
        response, call2 = await digest.call(gateway, other["exten"], ("Carol", "1002"), ("pbx-trunk", "trunk-secret"))
        assert response.status == 200 and call2 is not None
        assert [p["caller_id_number"] for p in await participants(api, other)] == ["1002"]

        # Unknown peers: challenged, and refused with credentials that are not a trunk's (or anyone's).
        response, _ = await stranger.call(gateway, f"wazo-meeting-{meeting['uuid']}")
        assert response.status == 401
        response, _ = await stranger.call(gateway, f"wazo-meeting-{meeting['uuid']}", credentials=("pbx", "guess"))
        assert response.status == 403
        # A trusted trunk dialing nothing known is told so.
        response, _ = await trusted.call(gateway, "wazo-meeting-00000000-0000-4000-8000-000000000000")
        assert response.status == 404
        assert len(await participants(api, meeting)) == 2
    finally:
        for handle in (trusted, digest, stranger):
            while any(not c.ended.is_set() for c in handle.calls.values()):
                await handle.bye()
            await handle.stop()
        await member.close()


async def test_asterisk_down_at_first_then_up_and_leg_kept_when_empty_if_configured(
    servers: Servers, session: aiohttp.ClientSession
) -> None:
    down = ConfBridgePeer(password=PASSWORD, tone=PEER_TONE)
    await down.start()
    port = down.port
    await down.stop()  # nothing listens there yet: Asterisk is down
    api = await servers.start(**bridge_env(port, hangup_when_empty="false"))
    _, token = await api.create_user("alice")
    meeting = await api.create_meeting(token)
    _, member = await join_member(api, session, meeting)
    peer = ConfBridgePeer(password=PASSWORD, tone=PEER_TONE)
    try:
        await until(lambda: UUID(meeting["uuid"]) in api.client.app[ASTERISK_BRIDGE].links, 5, "the link")
        link = api.client.app[ASTERISK_BRIDGE].links[UUID(meeting["uuid"])]
        await until(lambda: link.attempts >= 3, 8, "the retries while Asterisk is down")
        assert link.connections == 0, link
        assert member.call is not None and not member.call.ended.is_set()
        await peer.start(port)
        await until(peer.answered.is_set, 5, "the leg once Asterisk is up")

        # hangup_when_empty: false: the member leaves, the leg stays (the room is Asterisk's alone).
        await member.sip.bye(member.call)
        uuid = UUID(meeting["uuid"])
        await until(lambda: len(api.services.conferences.participants(uuid)) == 1, 5, "the member gone")
        await asyncio.sleep(1.0)
        call = peer.current
        assert not call.ended.is_set()
        assert [p["caller_id_name"] for p in await participants(api, meeting)] == ["Asterisk ConfBridge"]

        # Deleting the meeting ends it, with no retry after.
        await delete_and_see_the_leg_end_for_good(api, token, meeting, peer)
    finally:
        await peer.stop()
        await member.close()


def test_offer_keeps_the_configured_audio_codecs_in_their_order_and_the_video_as_it_is() -> None:
    offer = "\r\n".join(
        [
            "v=0",
            "m=audio 4000 RTP/AVP 111 9 0 8 101",
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 useinbandfec=1",
            "a=rtpmap:9 G722/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=sendrecv",
            "m=video 4002 RTP/AVP 96 97",
            "a=rtpmap:96 VP8/90000",
            "a=rtpmap:97 H264/90000",
            "a=fmtp:97 profile-level-id=42e01f;packetization-mode=1",
            "a=sendrecv",
        ]
    )
    kept = restrict_codecs(offer, ["pcma", "g722"]).split("\r\n")
    assert kept[1] == "m=audio 4000 RTP/AVP 8 9 101"
    assert not [line for line in kept if "opus" in line or "PCMU" in line or "fmtp:111" in line]
    assert "a=fmtp:101 0-16" in kept and "a=sendrecv" in kept
    # the video section is not the audio codecs' business
    assert kept[kept.index("m=video 4002 RTP/AVP 96 97") :] == offer.split("\r\n")[-5:]
