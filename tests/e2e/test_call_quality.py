"""Call quality through the SIP path: two browser-alikes in a meeting, each participant's figures as the calld
participants API shows them (bitrates, loss, round trip, the video resolutions), then the media counters /metrics
gives while the call goes on and after it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from tests.api.test_health import METRICS_TOKEN, samples
from tests.conftest import Api, make_settings
from tests.e2e.conftest import Member, Room, guest_credentials
from tests.waiting import until

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(database_url: str) -> Any:
    return make_settings(database_url, MEETINGS_METRICS__TOKEN=METRICS_TOKEN)


async def two_in_a_meeting(api: Api, room: Room) -> tuple[dict[str, Any], str, Member, Member]:
    _, alice = await api.create_user("alice")
    meeting = await api.create_meeting(alice)
    red = await room.member(guest_credentials(meeting), 440.0, "red")
    green = await room.member(guest_credentials(meeting), 660.0, "green")
    await red.join("meeting-guest")
    await green.join("meeting-guest")
    return meeting, alice, red, green


def settled(quality: dict[str, Any]) -> bool:
    """Every figure the test looks at has been measured at least once."""
    audio, video = quality["audio"], quality["video"]
    return (
        quality["round_trip_time"] is not None
        and audio["in"]["bitrate"] > 0
        and audio["out"]["fraction_lost"] is not None
        and video["in"]["bitrate"] > 0
        and video["in"]["resolution"] is not None
        and video["out"]["bitrate"] > 0
        and video["out"]["fraction_lost"] is not None
        and any(layer["resolution"] for layer in video["out"]["layers"])
    )


async def test_each_participants_call_quality_in_the_participants_api(api: Api, room: Room) -> None:
    meeting, alice, red, green = await two_in_a_meeting(api, room)
    path = f"/api/calld/1.0/meetings/{meeting['uuid']}/participants"
    deadline = time.monotonic() + 30
    while True:
        listed = await api.call("GET", path, api.admin_token)
        by_call = {item["call_id"]: item for item in listed["items"]}
        if all(settled(item["call_quality"]) for item in by_call.values()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert red.call is not None and green.call is not None
    red_item, green_item = by_call[red.call.call_id], by_call[green.call.call_id]
    quality = red_item["call_quality"]
    assert settled(quality), quality
    audio, video = quality["audio"], quality["video"]
    # what red sends: his tone and his 160x120 picture, all of it arrived (loopback)
    assert audio["in"]["packets"] > 0 and audio["in"]["packets_lost"] == 0 and audio["in"]["fraction_lost"] == 0
    assert video["in"]["packets"] > 0 and video["in"]["packets_lost"] == 0 and video["in"]["resolution"] == "160x120"
    # what he receives: the mix, and green's picture in one of his slots; his receiver reports no loss
    assert audio["out"]["packets"] > 0 and audio["out"]["fraction_lost"] == 0 and audio["out"]["packets_lost"] == 0
    assert video["out"]["packets_lost"] == 0
    assert video["out"]["layers"] == [{"participant_id": green_item["id"], "resolution": "160x120"}]
    # measured from his receiver reports against our sender reports, on loopback
    assert 0 <= quality["round_trip_time"] < 0.5 and quality["round_trip_time_max"] >= quality["round_trip_time"]
    assert quality["duration"] > 0
    # the owner's view has the same field; the events do not carry it
    mine = await api.call("GET", f"/api/calld/1.0/users/me/meetings/{meeting['uuid']}/participants", alice)
    assert all("call_quality" in item for item in mine["items"])


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = await api.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status == 200
    return samples(await answer.text())


def media(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, kind: str, direction: str) -> float:
    return found[(name, (("direction", direction), ("kind", kind)))]


async def test_media_counters_move_during_a_call_and_keep_what_it_counted(api: Api, room: Room) -> None:
    meeting, _, red, green = await two_in_a_meeting(api, room)
    await until(lambda: bool(red.messages("ConfbridgeWelcome")), 10, "the slots' re-INVITE and the welcome")
    await asyncio.sleep(1.0)
    before = await scrape(api)
    await asyncio.sleep(3.0)
    during = await scrape(api)
    for kind in ("audio", "video"):
        for direction in ("in", "out"):
            for name in ("meetings_media_packets_total", "meetings_media_bytes_total"):
                assert media(during, name, kind, direction) > media(before, name, kind, direction), (name, kind)
        assert media(during, "meetings_media_packets_lost_total", kind, "in") == 0
    # two cameras of 15 frames a second for 3 s: at least a packet per frame each, through each other's slot
    assert (
        media(during, "meetings_media_packets_total", "video", "out")
        - media(before, "meetings_media_packets_total", "video", "out")
        >= 2 * 15 * 3 * 0.5
    )
    assert (
        during[("meetings_media_forwarding_seconds_total", ())]
        > before[("meetings_media_forwarding_seconds_total", ())]
    )
    assert during[("meetings_media_mixing_seconds_total", ())] > before[("meetings_media_mixing_seconds_total", ())]
    assert during[("meetings_media_keyframe_requests_total", (("direction", "sent"),))] >= 1  # a slot's first picture
    assert ("meetings_media_nacks_total", (("direction", "received"),)) in during
    assert ("meetings_media_retransmissions_total", ()) in during

    for member in (red, green):
        assert member.call is not None
        await member.sip.bye(member.call)
    await until(lambda: api.services.conferences.count(uuid.UUID(meeting["uuid"])) == 0, 10, "both to leave")
    after = await scrape(api)
    for kind in ("audio", "video"):
        for direction in ("in", "out"):
            name = "meetings_media_packets_total"
            assert media(after, name, kind, direction) >= media(during, name, kind, direction), (kind, direction)
