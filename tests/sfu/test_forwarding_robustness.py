"""What one participant does costs the others nothing: a subscriber whose socket stalls, 10,000 forged packets on
media ports, a burst of loss from a publisher, a publisher that leaves. Real peers on real sockets; after each, the
others are shown to keep receiving frames."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import struct
from typing import Any

import pytest

from sfu import SFU, RoomOptions
from tests.waiting import until

from .clients import RtpPhone, WebRtcClient
from .rtpvideo import RtpVideoPeer
from .test_rtpleg import phone_offer

pytestmark = pytest.mark.slow


def frames(client: WebRtcClient) -> dict[str, int]:
    """Frames received so far, per colour shown."""
    counts: dict[str, int] = {}
    for colours in client.video.values():
        for colour in colours:
            counts[colour] = counts.get(colour, 0) + 1
    return counts


async def keeps_receiving(client: WebRtcClient, colour: str, count: int = 10, seconds: float = 8) -> None:
    start = frames(client).get(colour, 0)
    await until(lambda: frames(client).get(colour, 0) >= start + count, seconds, f"{client.name} to see {colour}")


def ice_sockets(client: WebRtcClient) -> list[Any]:
    """The asyncio transports of the client's ICE sockets (to stall them)."""
    transports = []
    for transceiver in client.pc.getTransceivers():
        connection = transceiver.receiver.transport.transport.iceGatherer._connection
        for protocol in connection._protocols:
            if protocol.transport not in transports:
                transports.append(protocol.transport)
    return transports


def server_ports(client: WebRtcClient) -> set[int]:
    """The server's ICE ports, from the candidates of its SDP."""
    sdp = client.pc.remoteDescription.sdp
    return {int(line.split()[5]) for line in sdp.split("\r\n") if line.startswith("a=candidate:")}


def forged_packets(count: int) -> list[bytes]:
    """RTP-looking packets (random SSRCs, VP8's payload type, keyframe-looking payloads), RTCP-looking ones, STUN-
    and DTLS-looking ones and plain garbage."""
    packets = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            header = struct.pack("!BBHII", 0x80, 96, i & 0xFFFF, i * 3000, random.getrandbits(32))
            packets.append(header + b"\x90\x80\x80\x01\x10\x02\x00\x9d\x01\x2a" + os.urandom(100))
        elif kind == 1:
            packets.append(struct.pack("!BBHI", 0x81, 206, 2, random.getrandbits(32)) + os.urandom(4))
        elif kind == 2:
            packets.append(b"\x00\x01\x00\x00\x21\x12\xa4\x42" + os.urandom(12))
        elif kind == 3:
            packets.append(b"\x16\xfe\xfd" + os.urandom(60))
        else:
            packets.append(os.urandom(random.randrange(1, 200)))
    return packets


async def test_a_stalled_subscriber_forged_packets_loss_and_a_leaving_publisher_cost_the_others_nothing(
    sfu: SFU, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    room = sfu.room("robust", RoomOptions(last_n=3))
    a, b, c = WebRtcClient("A", None, "red"), WebRtcClient("B", None, "blue"), WebRtcClient("C", None, "green")
    phone, camera = RtpPhone(None), RtpVideoPeer("yellow")
    await phone.open()
    await camera.open()
    try:
        for client in (a, b, c):
            await client.join(room)
        for client in (a, b, c):
            await client.accept_slots()
        offer = phone_offer(
            f"m=audio {phone.port} RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
            f"m=video {camera.port} RTP/AVP 96",
            "a=rtpmap:96 VP8/90000",
            "a=sendrecv",
        )
        _, answer = await room.join_rtp(offer)
        video_port = int(next(line for line in answer.split("\r\n") if line.startswith("m=video")).split()[1])
        camera.start(("127.0.0.1", video_port))
        # the phone's video is one more source: each gets a third slot for it (the gateway's second re-INVITE)
        for client in (a, b, c):
            assert client.participant is not None and client.participant.missing_slots == 1
            await client.accept_slots()
        await until(lambda: c.colours_seen() == {"red", "blue", "yellow"}, 10, "C to see everyone")
        await until(lambda: a.colours_seen() == {"blue", "green", "yellow"}, 10, "A to see everyone")

        # B stops reading his socket: the kernel's buffer fills and drops; the others see no difference
        for transport in ice_sockets(b):
            transport.pause_reading()
        await keeps_receiving(c, "red")
        await keeps_receiving(a, "green")
        await keeps_receiving(a, "blue")  # B still sends: only his receiving stalled

        # 10,000 forged packets on the server's ICE ports and the phone's video ports, from another host
        loop = asyncio.get_running_loop()
        flood, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.3", 0))
        targets = [("127.0.0.1", port) for port in server_ports(a) | server_ports(c)] + [
            ("127.0.0.1", video_port),
            ("127.0.0.1", video_port + 1),
        ]
        before_c, before_a = frames(c).get("red", 0), frames(a).get("yellow", 0)
        try:
            for index, packet in enumerate(forged_packets(10_000)):
                flood.sendto(packet, targets[index % len(targets)])
                if index % 200 == 0:
                    await asyncio.sleep(0.01)
        finally:
            flood.close()
        await keeps_receiving(c, "red")
        await keeps_receiving(a, "yellow")
        assert frames(c)["red"] > before_c and frames(a)["yellow"] > before_a

        # a burst of loss from the phone's camera (half a second of packets): the others are unaffected, and the
        # phone's picture comes back (the server asks it for a keyframe at the gap)
        transport: Any = camera._transport
        sendto = transport.sendto
        transport.sendto = lambda data, addr=None: None
        await asyncio.sleep(0.5)
        transport.sendto = sendto
        await keeps_receiving(c, "red")
        await keeps_receiving(c, "yellow")

        # A leaves: C goes on seeing B and the phone
        await a.close()
        await until(lambda: len(room.participants) == 3, 5, "A to be gone")
        await keeps_receiving(c, "blue")
        await keeps_receiving(c, "yellow")
        for transport in ice_sockets(b):
            transport.resume_reading()
        await keeps_receiving(b, "green")
        problems = [
            r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or "Traceback" in r.getMessage()
        ]
        assert not problems, problems
    finally:
        for client in (a, b, c):
            await client.close()
        await phone.close()
        await camera.close()
