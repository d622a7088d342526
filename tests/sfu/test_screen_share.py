"""A shared screen through real peers: a second video m-line marked a=content:slides, added by re-offer, is a
second source of its sender that every other subscriber gets before the speakers; stopping it gives the slot back."""

from __future__ import annotations

import pytest
from aiortc import RTCRtpTransceiver, RTCSessionDescription

from sfu import SFU, RoomOptions
from tests.waiting import until

from .clients import ColourTrack, WebRtcClient, speaker_and_two_viewers


async def _reoffer(client: WebRtcClient, slides: RTCRtpTransceiver) -> None:
    """The client's own re-offer (a re-INVITE), its screen's m-line marked as slides (RFC 4796)."""
    assert client.participant is not None
    await client.pc.setLocalDescription(await client.pc.createOffer())
    offer = client.pc.localDescription.sdp.replace(
        f"a=mid:{slides.mid}\r\n", f"a=mid:{slides.mid}\r\na=content:slides\r\n"
    )
    answer = await client.participant.handle_offer(offer)
    await client.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


@pytest.mark.slow
async def test_a_shared_screen_takes_the_slot_before_the_speaker_until_it_stops(sfu: SFU) -> None:
    room = sfu.room("screen", RoomOptions(last_n=1))
    async with speaker_and_two_viewers(room) as (a, b, c):  # A speaks: C's one slot shows him
        assert b.participant is not None and c.participant is not None

        slides = b.pc.addTransceiver(ColourTrack("yellow"), direction="sendonly")
        await _reoffer(b, slides)
        assert [s.content for s in b.participant.video_sources] == ["main", "slides"]
        # C's one slot shows B's screen though A still speaks; A (another subscriber) gets it too
        await until(lambda: c.colours_seen() == {"yellow"}, 8)
        assert c.participant.slots[0].target is b.participant.video_sources[1]
        await until(lambda: "yellow" in a.colours_seen(), 8)
        # B's camera goes on beside it (the two share payload types: told apart by SSRC)
        camera, screen = b.participant.video_sources
        sent = camera.packets, screen.packets
        await until(lambda: camera.packets > sent[0] + 5 and screen.packets > sent[1] + 5, 5)

        slides.direction = "inactive"
        await _reoffer(b, slides)
        assert [s.content for s in b.participant.video_sources] == ["main"]
        await until(lambda: c.colours_seen() == {"red"}, 8)
