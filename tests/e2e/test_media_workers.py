"""Rooms in media worker processes over a real RabbitMQ (127.0.0.1:5672): two workers, rooms placed on the
least-loaded, people joining through the real SIP path and hearing and seeing each other, and kick, mute, hang-up
and meeting deletion working for rooms that live in another process. Each test uses its own exchange (and so its
own queues), and ends the processes it started by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bench.serving import serving
from tests.conftest import Api
from tests.e2e import test_meeting_media as meeting_media
from tests.e2e.conftest import Member, Room, guest_credentials, user_line
from tests.e2e.served import guest, join, make_meeting
from tests.e2e.workers import (  # noqa: F401 (fixtures)
    BROKER,
    SOURCE,
    exchange_fixture,
    rabbitmq_answers,
    remote_media,
    settings_fixture,
    workers_announced,
    workers_fixture,
)
from tests.waiting import until

pytestmark = pytest.mark.slow
if not rabbitmq_answers():
    pytestmark = [pytest.mark.slow, pytest.mark.skip(reason="RabbitMQ is not answering on 127.0.0.1:5672")]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_rooms_spread_over_two_workers_and_calls_are_controlled_as_in_process(
    api: Api, room: Room, workers: list[subprocess.Popen[bytes]]
) -> None:
    media = remote_media(api)
    await workers_announced(media, 2)
    _, alice_token = await api.create_user("alice")
    first = await api.create_meeting(alice_token)
    second = await api.create_meeting(alice_token, name="Other")

    # The first meeting: two guests with a tone and a colour each, and Alice's own line.
    a = await room.member(guest_credentials(first), 440, "red")
    b = await room.member(guest_credentials(first), 880, "green")
    c = await room.member(await user_line(api, alice_token), None, "blue")
    await a.join("meeting-guest")
    await b.join("meeting-guest")
    await c.join(f"wazo-meeting-{first['uuid']}")
    # The second meeting: two guests, placed on the other (least-loaded) worker.
    d = await room.member(guest_credentials(second), 440, "yellow")
    e = await room.member(guest_credentials(second), None, "magenta")
    await d.join("meeting-guest")
    await e.join("meeting-guest")

    first_room, second_room = media.rooms[first["uuid"]], media.rooms[second["uuid"]]
    assert first_room.worker is not second_room.worker
    # each worker's own count (its announcement, from its process) has the room placed on it
    await until(
        lambda: sorted((w.rooms, w.participants) for w in media.workers.values()) == [(1, 2), (1, 3)],
        10,
        "each worker to report its room and participants",
    )
    pids = {w.pid for w in media.workers.values()}
    assert pids == {process.pid for process in workers}

    # Media: the slots came by re-INVITE; everyone hears and sees the others, as in-process.
    await until(lambda: all(m.call and m.call.reinvites >= 1 for m in (a, b, c, d, e)), 15, "the slot re-INVITEs")
    await until(lambda: bool(c.messages("ConfbridgeWelcome")), 10, "C's welcome")
    await meeting_media.hear_and_see_each_other(a, b, c)
    await until(lambda: e.media.colours_seen() >= {"yellow"}, 10, "E seeing D")
    assert "yellow" not in a.media.colours_seen() and "red" not in e.media.colours_seen()
    # the process's media counters (/metrics) are the workers' own, as announced
    await until(lambda: media.media_counters().video_packets_out > 0, 5, "the workers' media counters")
    slots = a.messages("ConfbridgeVideoSlots")
    welcome = c.messages("ConfbridgeWelcome")[0]
    assert slots and set(slots[-1]["video_slots"].values()) - {None} <= {ch["id"] for ch in welcome["channels"]}

    # The organiser mutes B: the worker stops mixing him and everyone is told; the quality figures come across.
    path = f"/api/calld/1.0/users/me/meetings/{first['uuid']}/participants"
    items = (await api.call("GET", path, alice_token))["items"]
    assert len(items) == 3
    assert b.call is not None
    target = next(p["id"] for p in items if p["call_id"] == b.call.call_id)
    await api.call("PUT", f"{path}/{target}/mute", alice_token, expect=204)
    await until(lambda: bool(a.messages("ConfbridgeMute")), 5, "the mute to be told")
    assert first_room.participants[target].muted
    quality = (await api.call("GET", path, alice_token))["items"][0]["call_quality"]
    assert quality and quality["audio"]["in"]["packets"] > 0, quality

    # Kicked from the second room: his call gets a BYE, the other is told.
    second_path = f"/api/calld/1.0/users/me/meetings/{second['uuid']}/participants"
    items = (await api.call("GET", second_path, alice_token))["items"]
    assert e.call is not None and d.call is not None
    kicked = next(p["id"] for p in items if p["call_id"] == e.call.call_id)
    await api.call("DELETE", f"{second_path}/{kicked}", alice_token, expect=204)
    await asyncio.wait_for(e.call.ended.wait(), 5)
    await until(lambda: bool(d.messages("ConfbridgeLeave")), 5, "D told of E leaving")
    # D hangs up: the room is empty, closed on its worker too.
    assert (await d.sip.bye(d.call)).status == 200
    await until(lambda: second["uuid"] not in media.rooms, 5, "the second room to close")
    await until(lambda: sorted(w.rooms for w in media.workers.values()) == [0, 1], 5, "its worker to report it gone")

    # The first meeting is deleted: everyone in it is hung up with the reason, its room closes on its worker.
    await api.call("DELETE", f"/api/confd/1.1/users/me/meetings/{first['uuid']}", alice_token, expect=204)
    for member in (a, b, c):
        assert member.call is not None
        await asyncio.wait_for(member.call.ended.wait(), 5)
        assert "meeting deleted" in (member.call.bye_reason or "")
    await until(lambda: not media.rooms, 5, "the first room to close")
    await until(lambda: all(w.rooms == 0 and w.participants == 0 for w in media.workers.values()), 5, "workers empty")
    assert all(process.poll() is None for process in workers), "a worker died"


async def test_a_phone_over_udp_in_a_room_on_a_worker(api: Api, room: Room, workers: list[Any]) -> None:
    """Plain RTP to and from the worker's own port (its answer names it), as in-process."""
    await workers_announced(remote_media(api), 2)
    await meeting_media.test_phone_over_udp_hears_and_is_heard(api, room)
    # the audio went through a worker (its own counters, announced from its process)
    workers_seen = remote_media(api).workers.values()
    await until(lambda: any(w.counters.audio_packets_in > 100 for w in workers_seen), 5, "a worker's audio counters")


async def test_no_worker_means_a_503_with_retry_after(api: Api, room: Room) -> None:
    """Rooms go to workers, and none has announced itself: the call is refused, not left waiting."""
    media = remote_media(api)
    media.placement_wait = 1.0
    _, alice_token = await api.create_user("alice")
    meeting = await api.create_meeting(alice_token)
    member = await room.member(guest_credentials(meeting), 440, "red")
    with pytest.raises(Exception, match="503"):
        await member.join("meeting-guest")


async def _members_in(session: aiohttp.ClientSession, server: Any, count: int) -> list[Member]:
    meeting = await make_meeting(session, server.base)
    members = [await guest(session, server, meeting, colour) for colour in ("red", "green", "blue")[:count]]
    for member in members:
        await join(member)
    return members


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_serve_starts_its_media_workers_and_none_outlives_it(
    tmp_path: Path, exchange: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`meetings serve` with media.workers: 2 starts two worker processes (its children), places rooms on them, and
    whether it stops (SIGTERM) or is killed (SIGKILL), no worker is left behind."""
    monkeypatch.setenv("PYTHONPATH", SOURCE)
    children: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        server = await stack.enter_async_context(
            serving(
                tmp_path, f"sqlite:///{tmp_path}/meetings.db",
                MEDIA__WORKERS="2", MEDIA__WORKERS_EXCHANGE=exchange, MEDIA__HOST_ADDRESSES="[127.0.0.1]",
                MEDIA__RTP_PORT_MIN="32000", MEDIA__RTP_PORT_MAX="32999", BUS__URL=BROKER,
            )
        )  # fmt: skip
        try:
            children = children_of(server.pid)
            assert len(children) == 2, children
            members = await _members_in(session, server, 2)
            try:
                first = members[0]
                await until(lambda: bool(first.call and first.call.reinvites), 15, "the slot re-INVITE")
                await until(lambda: first.media.colours_seen() >= {"green"}, 10, "one guest seeing the other")
            finally:
                for member in members:
                    await member.close()
            if how == "SIGKILL":
                server.process.kill()
            else:
                server.process.terminate()
            await asyncio.wait_for(server.process.wait(), 20)
            await until(lambda: not any(alive(pid) for pid in children), 10, "the workers to end with the server")
        finally:
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    if alive(pid):
                        os.kill(pid, signal.SIGKILL)
