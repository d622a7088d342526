"""A participant on a lossy or cut link keeps his call as long as RFC 7675 allows: the server's ICE consent checks
are retransmitted, and the call ends only once none has been answered for 30 s.

A real aiortc peer sits in a network namespace (its socket bound inside, its packets crossing a veth), the SFU on
the veth's other end; iptables drops the packets. Before, aioice sent each check once and gave up after six
unanswered in a row: half the packets lost ended the call in about 30 s in one run out of three.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from sfu import SFU, Participant, RoomOptions
from sfu.aiortc_adapter import CONSENT_TIMEOUT, keep_consent_through_loss
from tests.netns import WeakLink
from tests.sfu.clients import WebRtcClient, tone_power
from tests.waiting import until

pytestmark = [pytest.mark.slow, pytest.mark.waits]


#: the SFU's RTP ports (tests/net/conftest.py)
RTP_PORTS = (32000, 32999)


async def hears(client: WebRtcClient, frequency: float, seconds: float = 1.0) -> bool:
    client.audio.clear()
    client.recording = True
    await asyncio.sleep(seconds)
    client.recording = False
    heard = client.recorded()
    return len(heard) > 0.5 * 48000 * seconds and tone_power(heard, frequency) > 0.5


async def stays_in_call(participant: Participant, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert not participant.closed, f"the call ended: {participant.close_reason}"
        await asyncio.sleep(0.25)


async def hears_again(client: WebRtcClient, frequency: float, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await hears(client, frequency):
        assert time.monotonic() < deadline, "the tone did not come back once the link was clean again"


async def test_consent_survives_loss_and_a_short_cut_and_expires_30_s_after_the_last_answer(
    link: WeakLink, sfu: SFU
) -> None:
    room = sfu.room("weak", RoomOptions())
    # the guest behind the weak link, and a speaker on a clean one (a 440 Hz tone he must hear)
    guest = WebRtcClient("guest", None, None, address=link.inside_address, ports=link.ports())
    speaker = WebRtcClient("speaker", 440, None, address=link.outside_address)
    # the test peer keeps its own consent the same way (a browser retransmits too): what is tested is the server
    keep_consent_through_loss(guest.pc)
    try:
        participant = await guest.join(room)
        await speaker.join(room)
        await hears_again(guest, 440)

        # half the packets lost, each way, for longer than aioice's six single checks could bear
        link.set_loss(0.5)
        await stays_in_call(participant, 40)
        link.set_loss(0)
        await hears_again(guest, 440)
        assert link.dropped_packets() > 100
        # the last check answered during the loss may be long gone: on the clean link, one is answered within a
        # retried check (at most 3.5 s of retransmissions, then 1 s) before the cut below
        await stays_in_call(participant, 7)

        # nothing gets through for 20 s: still within consent (the last answer may have come up to 6 s before)
        link.block_udp()
        await stays_in_call(participant, 20)
        link.block_udp(False)
        await hears_again(guest, 440)
        # media alone does not renew consent, an answered check does: the next comes within 6 s
        await stays_in_call(participant, 10)

        # cut for good: the call ends once no check was answered for 30 s (the last answer came at most one check
        # interval, 6 s, before the cut), and not before
        link.block_udp()
        cut = time.monotonic()
        await until(lambda: participant.closed, CONSENT_TIMEOUT + 15, "the call to end")
        elapsed = time.monotonic() - cut
        assert participant.close_reason == "disconnected"
        assert CONSENT_TIMEOUT - 6.5 <= elapsed <= CONSENT_TIMEOUT + 8, elapsed
    finally:
        await guest.close()
        await speaker.close()
