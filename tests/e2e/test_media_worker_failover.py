"""A room survives the loss of its media worker: the worker is killed (SIGKILL: no goodbye) or frozen (SIGSTOP: a
network partition, as the control role sees it), the control role takes it for dead when its announcements stop,
opens the room on the other worker and brings everyone back into it by re-INVITE in the same SIP dialog. Real
RabbitMQ (127.0.0.1:5672), real worker processes, the e2e SIP clients with aiortc media and a plain-RTP phone."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import time
from typing import Any

import pytest

from tests.conftest import Api
from tests.e2e import test_meeting_media as meeting_media
from tests.e2e.conftest import Member, Room, guest_credentials, user_line
from tests.e2e.sipclient import Call
from tests.e2e.workers import (  # noqa: F401 (fixtures)
    exchange_fixture,
    media_workers,
    rabbitmq_answers,
    remote_media,
    settings_fixture,
    workers_announced,
    workers_fixture,
)
from tests.sfu.clients import RtpPhone
from tests.waiting import until

pytestmark = pytest.mark.slow
if not rabbitmq_answers():
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason="RabbitMQ is not answering on 127.0.0.1:5672")]

logger = logging.getLogger(__name__)

#: how long the room may take to be back on the other worker, everyone in it (the control role takes ~2 s of
#: silence to declare a worker dead; CI is noisy)
MOVE_SECONDS = 15


def worker_process(workers: list[subprocess.Popen[bytes]], pid: int) -> subprocess.Popen[bytes]:
    return next(process for process in workers if process.pid == pid)


async def three_in_a_meeting(api: Api, room: Room) -> tuple[dict[str, Any], str, Member, Member, Member]:
    """A (440 Hz, red) and B (880 Hz, green), guests, and C (silent, blue) on Alice's line, their slots offered."""
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    a = await room.member(guest_credentials(meeting), 440, "red")
    b = await room.member(guest_credentials(meeting), 880, "green")
    c = await room.member(await user_line(api, alice_token), None, "blue")
    await a.join("meeting-guest")
    await b.join("meeting-guest")
    await c.join(f"wazo-meeting-{meeting['uuid']}")
    await until(lambda: all(m.call and m.call.reinvites >= 1 for m in (a, b, c)), 15, "the slot re-INVITEs")
    return meeting, alice_token, a, b, c


async def test_a_room_moves_to_the_other_worker_when_its_worker_is_killed(
    api: Api, room: Room, workers: list[subprocess.Popen[bytes]]
) -> None:
    media = remote_media(api)
    await workers_announced(media, 2)
    meeting, alice_token, a, b, c = await three_in_a_meeting(api, room)
    await meeting_media.hear_and_see_each_other(a, b, c)
    members = (a, b, c)
    calls: list[Call] = [member.call for member in members if member.call is not None]
    moved = media.rooms[meeting["uuid"]]
    lost = moved.worker
    ids = sorted(moved.participants)
    # B is muted by the organiser before the loss: that follows him to the other worker
    path = f"/api/calld/1.0/users/me/meetings/{meeting['uuid']}/participants"
    items = (await api.call("GET", path, alice_token))["items"]
    b_id = next(p["id"] for p in items if p["call_id"] == calls[1].call_id)
    await api.call("PUT", f"{path}/{b_id}/mute", alice_token, expect=204)
    await until(lambda: moved.participants[b_id].muted, 5, "B muted on his worker")

    killed_at = time.monotonic()
    worker_process(workers, lost.pid).kill()
    await until(
        lambda: moved.worker is not lost and sorted(moved.participants) == ids, MOVE_SECONDS, "everyone back in"
    )
    back_at = time.monotonic()
    # same dialogs: one re-INVITE without SDP each, no new INVITE, no hang-up
    assert [call.reoffers for call in calls] == [1, 1, 1]
    assert not any(call.ended.is_set() for call in calls)
    assert moved.worker.pid != lost.pid and not media.rooms[meeting["uuid"]].closed
    items = (await api.call("GET", path, alice_token))["items"]
    assert sorted(p["call_id"] for p in items) == sorted(call.call_id for call in calls)
    await until(lambda: moved.participants[b_id].muted, 5, "B still muted, on the other worker")

    # Media is back through the other worker: everyone sees the others again (pictures received since the move)
    await until(lambda: a.media.colours_seen() >= {"green", "blue"}, MOVE_SECONDS, "A seeing B and C again")
    await until(lambda: b.media.colours_seen() >= {"red", "blue"}, MOVE_SECONDS, "B seeing A and C again")
    seen_at = time.monotonic()
    logger.warning("failover: everyone back in the room %.2f s after the kill, seeing the others %.2f s after",
                   back_at - killed_at, seen_at - killed_at)  # fmt: skip
    await api.call("PUT", f"{path}/{b_id}/unmute", alice_token, expect=204)
    await until(lambda: not moved.participants[b_id].muted, 5, "B unmuted")
    await meeting_media.hear_and_see_each_other(a, b, c)
    # the surviving worker counts the room and its three participants
    await until(
        lambda: [(w.rooms, w.participants) for w in media.workers.values()] == [(1, 3)], 10, "the survivor's count"
    )


def audio_port(description: str) -> int:
    return int(next(line for line in description.splitlines() if line.startswith("m=audio")).split()[1])


def phone_answer(phone: RtpPhone, offer: str) -> str:
    """A PCMU phone's answer to the server's offer (its other streams refused), the phone now sending to the
    address the offer gives."""
    lines = offer.splitlines()
    host = next(line.split()[-1] for line in lines if line.startswith("c="))
    media_lines = [line for line in lines if line.startswith("m=")]
    port = audio_port(offer)
    assert " 0 " in next(line for line in media_lines if line.startswith("m=audio")) + " ", "no PCMU offered"
    answer = ["v=0", "o=phone 1 2 IN IP4 127.0.0.1", "s=call", "c=IN IP4 127.0.0.1", "t=0 0"]
    for line in media_lines:
        kind, _, proto, first = line[2:].split()[:4]
        if kind == "audio":
            answer += [f"m=audio {phone.port} RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=sendrecv"]
        else:
            answer.append(f"m={kind} 0 {proto} {first}")
    phone.pause()
    phone.start((host, port))
    return "\r\n".join(answer) + "\r\n"


async def test_a_phone_follows_the_room_to_the_other_worker(
    api: Api, room: Room, workers: list[subprocess.Popen[bytes]]
) -> None:
    """A plain-RTP phone is offered the other worker's address by re-INVITE, and hears and is heard again."""
    media = remote_media(api)
    await workers_announced(media, 2)
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    browser = await room.member(guest_credentials(meeting), 440, "red")
    await browser.join("meeting-guest")
    phone_sip, phone = await meeting_media.phone_on_line(api, room, alice_token)
    offers: list[str] = []

    async def answer(offer: bytes) -> bytes:
        offers.append(offer.decode())
        return phone_answer(phone, offers[-1]).encode()

    phone_sip.on_offer = answer
    try:
        assert (await phone_sip.register()).status == 200
        call = await phone_sip.invite(meeting["exten"], phone.offer().encode())
        first_port = audio_port(call.answer.decode())
        phone.start(("127.0.0.1", first_port))
        moved = media.rooms[meeting["uuid"]]
        lost = moved.worker
        await until(lambda: len(moved.participants) == 2, 5, "both in the room")

        worker_process(workers, lost.pid).kill()
        await until(lambda: moved.worker is not lost and len(moved.participants) == 2, MOVE_SECONDS, "both back")
        await until(lambda: bool(offers), MOVE_SECONDS, "the phone's re-INVITE")
        assert call.reinvites == 1 and call.reoffers == 0 and not call.ended.is_set()
        new_port = audio_port(offers[0])
        assert new_port != first_port and "RTP/AVP" in offers[0]

        # the phone hears the browser, the browser hears the phone, through the other worker
        await meeting_media.browser_and_phone_hear_each_other(browser, phone)
        assert (await phone_sip.bye(call)).status == 200
    finally:
        await phone.close()
        await phone_sip.close()


async def test_with_no_worker_left_everyone_gets_a_bye_with_the_reason(api: Api, room: Room, exchange: str) -> None:
    with media_workers(exchange, ("31000-31499",)) as (only,):
        media = remote_media(api)
        await workers_announced(media, 1)
        _, alice_token = await api.create_user("alice")
        meeting = await api.create_meeting(alice_token)
        a = await room.member(guest_credentials(meeting), 440, "red")
        b = await room.member(guest_credentials(meeting), 880, "green")
        await a.join("meeting-guest")
        await b.join("meeting-guest")
        only.kill()
        for member in (a, b):
            assert member.call is not None
            await asyncio.wait_for(member.call.ended.wait(), MOVE_SECONDS)
            assert "media server lost" in (member.call.bye_reason or ""), member.call.bye_reason
        await until(lambda: not media.rooms, 5, "the room to close")
        participants = await api.call("GET", f"/api/calld/1.0/meetings/{meeting['uuid']}/participants", api.admin_token)
        assert participants["total"] == 0


async def test_a_worker_cut_off_and_back_closes_the_room_that_moved_away(
    api: Api, room: Room, workers: list[subprocess.Popen[bytes]]
) -> None:
    """SIGSTOP: the worker is silent but its room is still there; once it is taken for dead and the room has moved,
    SIGCONT (the partition heals): it is told to close that room, and reports none."""
    media = remote_media(api)
    await workers_announced(media, 2)
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    a = await room.member(guest_credentials(meeting), 440, "red")
    await a.join("meeting-guest")
    moved = media.rooms[meeting["uuid"]]
    lost = moved.worker
    frozen = worker_process(workers, lost.pid)
    frozen.send_signal(signal.SIGSTOP)
    try:
        await until(lambda: moved.worker is not lost and len(moved.participants) == 1, MOVE_SECONDS, "A back in")
    finally:
        frozen.send_signal(signal.SIGCONT)
    assert a.call is not None and a.call.reoffers == 1 and not a.call.ended.is_set()
    await until(lambda: lost.id in media.workers, 10, "the worker to speak again")
    await until(lambda: media.workers[lost.id].rooms == 0, 10, "the worker to close the room it no longer holds")
    assert moved.worker.id != lost.id and not moved.closed
