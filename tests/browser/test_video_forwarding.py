"""Packet-level video forwarding seen from Chromium, through the real SIP path (sip.js over WebSocket, the apps).

- Four browsers in one meeting each decode the three others, and their pictures are lit.
- A slot that switches source shows no broken picture: with one slot each, the microphones turned on one at a time
  move the owner's slot from one guest to the other and back; each switch starts on a keyframe (``keyFramesDecoded``
  rises), and Chrome's decoder never needs to ask for one (``pliCount``, ``firCount`` unchanged: a picture it could
  not decode would make it ask).
- A lost packet is recovered by NACK, without a keyframe: the browsers reach the server's media ports through a
  small UDP relay of the test's own (the server announces the relay's address, as it would a 1:1 NAT's), which
  drops some of the server's VP8 packets on their way to the browsers; each browser asks for them again (its
  ``nackCount`` rises), gets them from the server's history (RTX), and goes on decoding without asking for a
  keyframe (``pliCount`` and ``keyFramesDecoded`` stay as they were).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from gateway.app import CALL_CONTROL
from gateway.config import Settings
from tests.browser.conftest import Browser, Site
from tests.browser.test_media_story import _assert_receiving, _join_as_guest, _join_as_owner
from tests.conftest import make_settings
from tests.waiting import until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RELAY_ADDRESS = "127.0.0.2"
PORTS = 24


# {mid: inbound video stats} of every slot of the page's call
VIDEO_STATS_JS = """
async () => {
  const pc = window.__meeting && window.__meeting.call && window.__meeting.call.peerConnection;
  if (!pc) return {};
  const out = {};
  for (const transceiver of pc.getTransceivers()) {
    if (!transceiver.mid || !transceiver.receiver) continue;
    for (const report of (await transceiver.receiver.getStats()).values()) {
      if (report.type === 'inbound-rtp' && report.kind === 'video') {
        out[transceiver.mid] = { framesDecoded: report.framesDecoded || 0, nackCount: report.nackCount || 0,
                                 freezeCount: report.freezeCount || 0,
                                 totalFreezesDuration: report.totalFreezesDuration || 0,
                                 pliCount: report.pliCount || 0, firCount: report.firCount || 0,
                                 keyFramesDecoded: report.keyFramesDecoded || 0,
                                 packetsLost: report.packetsLost || 0,
                                 retransmittedPacketsReceived: report.retransmittedPacketsReceived || 0 };
      }
    }
  }
  return out;
}
"""


async def video_stats(page: Any) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = await page.evaluate(VIDEO_STATS_JS)
    return result


async def set_microphone(page: Any, on: bool) -> None:
    await page.evaluate("(on) => window.__meeting.call.setMicEnabled(on)", on)


def sfu_room(site: Site) -> Any:
    (room,) = site.api.client.app[CALL_CONTROL].media.sfu.rooms.values()
    return room


@pytest.mark.parametrize("last_n", [1])
async def test_a_slot_switch_shows_no_broken_picture(media_site: Site, browser: Browser, last_n: int) -> None:
    owner, link = await _join_as_owner(browser, media_site, "Switching")
    gina = await _join_as_guest(browser, link, "Gina")
    hugo = await _join_as_guest(browser, link, "Hugo")
    for page in (owner, gina, hugo):
        await set_microphone(page, False)
    room = sfu_room(media_site)
    names = {p.id: str(p.info.get("name")) for p in room.participants.values()}
    (slot,) = next(p for p in room.participants.values() if names[p.id] not in ("Gina", "Hugo")).slots

    async def speak(page: Any, name: str) -> None:
        # silence first, so that the speaker's talk starts afresh (a talker who never stopped is not news)
        for other in (gina, hugo):
            await set_microphone(other, False)
        await until(lambda: not any(p.talking for p in room.participants.values()), 15, "everyone to be silent")
        await set_microphone(page, True)
        await until(
            lambda: slot.current is not None and names.get(slot.current.owner_id) == name,
            30,
            f"the owner's slot to show {name}",
        )

    await speak(gina, "Gina")
    await _assert_receiving(owner, "Gina")
    before = await video_stats(owner)
    switches = slot.switches
    await speak(hugo, "Hugo")
    await _assert_receiving(owner, "Hugo")
    await speak(gina, "Gina")
    await _assert_receiving(owner, "Gina")
    after = await video_stats(owner)
    assert slot.switches >= switches + 2
    ((mid, was),) = [(m, s) for m, s in before.items() if s["framesDecoded"] > 0]
    now = after[mid]
    assert now["keyFramesDecoded"] >= was["keyFramesDecoded"] + 2, (was, now)
    assert now["pliCount"] == was["pliCount"] and now["firCount"] == was["firCount"], (was, now)


async def test_four_browsers_see_each_other(media_site: Site, browser: Browser) -> None:
    owner, link = await _join_as_owner(browser, media_site, "Four")
    names = ["Gina", "Hugo", "Ines"]
    guests = [await _join_as_guest(browser, link, name) for name in names]
    everyone = {"Alice": owner, **dict(zip(names, guests, strict=True))}
    for name, page in everyone.items():
        for other in everyone:
            if other != name:
                await _assert_receiving(page, other)
    await browser.shot(owner, "owner-sees-three")


class _Front(asyncio.DatagramProtocol):
    """The relay's face to the browsers, on the address the server announces and the server's own port."""

    def __init__(self, relay: LossyRelay, port: int) -> None:
        self.relay, self.port = relay, port
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: tuple[str, int] | None = None
        self.back: _Back | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer = addr
        if self.back is not None and self.back.transport is not None:
            self.back.transport.sendto(data, (self.relay.server, self.port))


class _Back(asyncio.DatagramProtocol):
    """The relay's face to the server (what the server takes for the browser: a peer-reflexive candidate)."""

    def __init__(self, front: _Front, relay: LossyRelay) -> None:
        self.front, self.relay = front, relay
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        front = self.front
        if front.transport is None or front.peer is None:
            return
        if self.relay.drops(data):
            return
        front.transport.sendto(data, front.peer)


class LossyRelay:
    """Forwards every server port both ways; while `dropping`, every `every`-th VP8 packet (payload type
    `payload_type`, never its retransmissions) from the server to a browser is lost."""

    def __init__(self, public: str, server: str, ports: range, payload_type: int = 96, every: int = 40) -> None:
        self.public, self.server, self.ports = public, server, ports
        self.payload_type, self.every = payload_type, every
        self.dropping = False
        self.dropped = 0
        self._count = 0
        self._transports: list[asyncio.BaseTransport] = []

    def drops(self, data: bytes) -> bool:
        if not self.dropping or len(data) < 12 or not 128 <= data[0] < 192 or 192 <= data[1] <= 223:
            return False
        if data[1] & 0x7F != self.payload_type:
            return False
        self._count += 1
        if self._count % self.every:
            return False
        self.dropped += 1
        return True

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for port in self.ports:
            front_transport, front = await loop.create_datagram_endpoint(
                lambda port=port: _Front(self, port), local_addr=(self.public, port)
            )
            back_transport, back = await loop.create_datagram_endpoint(
                lambda front=front: _Back(front, self), local_addr=(self.server, 0)
            )
            front.back = back
            self._transports += [front_transport, back_transport]

    def close(self) -> None:
        for transport in self._transports:
            transport.close()


@pytest.fixture
def relay_ports() -> range:
    base = random.randrange(42000, 48000, 2)
    return range(base, base + PORTS)


@pytest.fixture
def last_n() -> int:
    return 4


@pytest.fixture
def settings(database_url: str, relay_ports: range, last_n: int, request: pytest.FixtureRequest) -> Iterator[Settings]:
    overrides = {"MEETINGS_MEETINGS__LAST_N": str(last_n)}
    if "relay" in request.fixturenames:
        # behind the relay: the server announces its address (as a 1:1 NAT's) and keeps to the ports it relays
        overrides |= {
            "MEETINGS_MEDIA__PUBLIC_ADDRESS": RELAY_ADDRESS,
            "MEETINGS_MEDIA__RTP_PORT_MIN": str(relay_ports.start),
            "MEETINGS_MEDIA__RTP_PORT_MAX": str(relay_ports.stop - 1),
        }
    yield make_settings(database_url, **overrides)


@pytest.fixture
async def relay(relay_ports: range) -> AsyncIterator[LossyRelay]:
    lossy = LossyRelay(RELAY_ADDRESS, "127.0.0.1", relay_ports)
    await lossy.start()
    try:
        yield lossy
    finally:
        lossy.close()


async def test_a_lost_packet_is_recovered_by_nack_without_a_keyframe(
    media_site: Site, browser: Browser, relay: LossyRelay
) -> None:
    owner, link = await _join_as_owner(browser, media_site, "Lossy")
    guest = await _join_as_guest(browser, link, "Gina")
    await _assert_receiving(owner, "Gina")
    await _assert_receiving(guest, "Alice")
    pages = {"owner": owner, "guest": guest}
    before = {label: await video_stats(page) for label, page in pages.items()}

    relay.dropping = True
    await until(lambda: relay.dropped >= 10, 20)
    relay.dropping = False
    await asyncio.sleep(1.0)  # the last retransmissions land

    for label, page in pages.items():
        after = await video_stats(page)
        (mid,) = [m for m, s in after.items() if s["framesDecoded"] > 0]
        was, now = before[label][mid], after[mid]
        assert now["nackCount"] > was["nackCount"], f"{label} asked for nothing again: {was} -> {now}"
        assert now["retransmittedPacketsReceived"] > was["retransmittedPacketsReceived"], (label, was, now)
        assert now["framesDecoded"] > was["framesDecoded"] + 30, (label, was, now)
        assert now["pliCount"] == was["pliCount"] and now["firCount"] == was["firCount"], (label, was, now)
        assert now["keyFramesDecoded"] == was["keyFramesDecoded"], (label, was, now)
