"""A subscriber on a slow link gets what fits: audio first and on time, video slots paused when they do not fit,
resumed when the link clears (pacer, bandwidth estimate and allocator: sfu/pacer.py, sfu/bandwidth.py,
sfu/allocation.py).

Two publishers on the clean side send pre-encoded VP8 at about 1.5 Mbit/s each and Opus; the subscriber, an aiortc
peer whose receivers do not decode (they still send REMB and receiver reports, as a browser does), sits in a network
namespace behind a veth rate-limited with tbf (tests/netns.py). Audio delay is what it waits in the
link's queue (audio is never queued in the pacer: it is sent at once and charged to it), read from tbf's backlog.
Under 300 kbit/s both slots must be paused (and the room say so), audio must arrive whole with little queueing;
raised to 3 Mbit/s, the pacer's padding probe must find the room and a slot resume from a keyframe.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RtpPacket

from bench.sfu import media
from sfu import SFU, Participant, Room, RoomOptions
from sfu.aiortc_adapter import gather_host_candidates, on_keyframe_request, tap_encoded_frames, tap_rtp_packets
from sfu.rtpsender import SlotSender
from tests.netns import WeakLink
from tests.waiting import until

pytestmark = pytest.mark.slow


#: the SFU's RTP ports (tests/net/conftest.py)
RTP_PORTS = (33000, 33999)


class Publisher:
    """Pre-encoded camera and microphone, on the clean side."""

    def __init__(self, index: int, address: str) -> None:
        loaded = media.load()
        self.address = address
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.pc.addTrack(media.PreEncodedAudio(loaded["opus"]))
        self.video = media.PreEncodedVideo(loaded["vp8"], index)
        on_keyframe_request(self.pc.addTrack(self.video), self.video.keyframe)

    async def join(self, room: Room) -> Participant:
        gather_host_candidates(self.pc, [self.address], None)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        participant, answer = await room.join_webrtc(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return participant


@dataclass
class AudioLog:
    #: (arrival, RTP timestamp in seconds, sequence) of each audio packet
    packets: list[tuple[float, float, int]] = field(default_factory=list)

    def since(self, start: float) -> list[tuple[float, float, int]]:
        return [p for p in self.packets if p[0] >= start]

    def longest_gap(self, start: float) -> float:
        arrivals = [p[0] for p in self.since(start)]
        return max((b - a for a, b in itertools.pairwise(arrivals)), default=float("inf"))

    def lost_share(self, start: float) -> float:
        sequences = sorted({p[2] for p in self.since(start)})
        if len(sequences) < 2:
            return 1.0
        return 1 - len(sequences) / (sequences[-1] - sequences[0] + 1)

    def queueing_delays(self, start: float) -> list[float]:
        """Each packet's delay beyond the least seen in the window (the transit with empty queues)."""
        offsets = [arrival - timestamp for arrival, timestamp, _ in self.since(start)]
        least = min(offsets)
        return sorted(offset - least for offset in offsets)


class Subscriber:
    """A browser-alike that never decodes: counts video packets per SSRC and logs audio packets."""

    def __init__(self, link: WeakLink) -> None:
        self.link = link
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.pc.addTransceiver("audio", direction="sendrecv")
        self.audio = AudioLog()
        self.video: dict[int, int] = {}
        self.participant: Participant | None = None
        self._tapped: set[int] = set()

    def _on_audio(self, packet: RtpPacket) -> None:
        self.audio.packets.append((time.monotonic(), packet.timestamp / 48000, packet.sequence_number))

    def _on_video(self, packet: RtpPacket) -> None:
        if packet.payload:
            self.video[packet.ssrc] = self.video.get(packet.ssrc, 0) + 1

    def _tap(self) -> None:
        for transceiver in self.pc.getTransceivers():
            receiver = transceiver.receiver
            if id(receiver) in self._tapped:
                continue
            self._tapped.add(id(receiver))
            # not consumed: aiortc's receiver still estimates the bandwidth (REMB) and reports (RTCP RR)
            tap_rtp_packets(receiver, self._on_audio if transceiver.kind == "audio" else self._on_video, consume=False)
            tap_encoded_frames(receiver, lambda codec, frame: None)

    async def join(self, room: Room) -> Participant:
        gather_host_candidates(self.pc, [self.link.inside_address], self.link.ports())
        self._tap()
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.participant, answer = await room.join_webrtc(self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return self.participant

    async def accept_slots(self) -> None:
        assert self.participant is not None
        offer = await self.participant.create_slots_offer()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        self._tap()
        gather_host_candidates(self.pc, [self.link.inside_address], self.link.ports())
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await self.participant.accept_slots_answer(self.pc.localDescription.sdp)

    def video_packets(self) -> int:
        return sum(self.video.values())


async def link_queueing(link: WeakLink, kbit: int, seconds: float) -> list[float]:
    """The delay the link's queue adds, sampled every 100 ms for `seconds`, sorted."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(await asyncio.to_thread(link.queued_bytes) * 8 / (kbit * 1000))  # `tc` off the loop
        await asyncio.sleep(0.1)
    return sorted(samples)


async def test_slow_subscriber_keeps_audio_pauses_video_and_resumes_when_the_link_clears(
    link: WeakLink, sfu: SFU
) -> None:
    room = sfu.room("slow", RoomOptions())
    paused_events: list[tuple[str, list[bool]]] = []
    publishers = [Publisher(index, link.outside_address) for index in range(2)]
    subscriber = Subscriber(link)
    try:
        for publisher in publishers:
            await publisher.join(room)
        guest = await subscriber.join(room)
        room.on("video_paused", lambda p: paused_events.append((p.id, [s.paused for s in p.slots])))
        await until(lambda: guest.missing_slots >= 2, 10, "both publishers' video")
        await subscriber.accept_slots()
        await until(lambda: subscriber.video_packets() > 100, 10, "video at the subscriber")

        # 300 kbit/s: both slots (1.5 Mbit/s each) are paused, and the apps are told (the room's event)
        link.limit_rate(300)
        await until(lambda: all(slot.paused for slot in guest.slots), 15, "both slots paused on 300 kbit/s")
        assert paused_events and paused_events[-1] == (guest.id, [True, True])
        await asyncio.sleep(2)  # what the link queued before the pause drains

        # audio goes on: every packet, and the link's queue (all the delay there is: audio never waits in the
        # pacer) short, while the pacer probes with padding for more
        window = time.monotonic()
        video_before = subscriber.video_packets()
        queueing = await link_queueing(link, 300, seconds=8)
        gap = subscriber.audio.longest_gap(window)
        lost = subscriber.audio.lost_share(window)
        delay = queueing[int(len(queueing) * 0.95)]
        print(f"300 kbit/s: audio {lost:.1%} lost, longest gap {gap:.2f} s; link queue p95 {delay * 1000:.0f} ms")
        # (how many packets the mix makes depends on this machine's load: what is sent must arrive, without a stop)
        assert gap < 1.0, "audio stopped"
        assert lost < 0.02
        assert delay < 0.2
        assert subscriber.video_packets() - video_before < 20

        # 3 Mbit/s: the probe finds the room and a slot comes back (from a keyframe), the apps are told again
        link.limit_rate(3000)
        cleared = time.monotonic()
        await until(lambda: not all(slot.paused for slot in guest.slots), 40, "a slot resumed on 3 Mbit/s")
        print(f"3 Mbit/s: a slot resumed after {time.monotonic() - cleared:.1f} s")
        assert False in paused_events[-1][1]
        resumed = next(slot for slot in guest.slots if not slot.paused)
        assert isinstance(resumed.sender, SlotSender)
        before = subscriber.video.get(resumed.sender.ssrc, 0)
        await asyncio.sleep(2)
        assert subscriber.video.get(resumed.sender.ssrc, 0) - before > 100
    finally:
        await subscriber.pc.close()
        for publisher in publishers:
            await publisher.pc.close()
