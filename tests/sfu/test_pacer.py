"""The pacer (sfu/pacer.py), on the event loop's real clock: video leaves at the estimate's rate, waits at most
the queue bound (what would wait longer is dropped), audio charged outside it takes its share first,
retransmissions go first but are dropped first when the queue is long, padding tops up to a probe rate."""

from __future__ import annotations

import asyncio
import time

from sfu.bandwidth import BandwidthEstimate
from sfu.pacer import MAX_QUEUE_DELAY, WIRE_OVERHEAD, Pacer
from sfu.rtprewriter import abs_send_time

PACKET = 1172  # bytes handed to the socket: 1200 on the wire


class Socket:
    """What the pacer sends to: each datagram with the time it left."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []

    def send(self, data: bytes) -> bool:
        self.sent.append((time.monotonic(), data))
        return True

    def bits_between(self, start: float, end: float) -> int:
        return sum((len(data) + WIRE_OVERHEAD) * 8 for at, data in self.sent if start <= at < end)


def packet(number: int, size: int = PACKET) -> bytes:
    return number.to_bytes(4, "big") + bytes(size - 4)


async def offer_video(pacer: Pacer, socket: Socket, bitrate: float, seconds: float) -> dict[int, float]:
    """Give the pacer video at `bitrate` in 10 ms batches for `seconds`; when each packet was given."""
    given: dict[int, float] = {}
    number = 0
    started = time.monotonic()
    budget = 0.0
    while time.monotonic() - started < seconds:
        budget += bitrate / 8 * 0.01
        while budget >= PACKET:
            budget -= PACKET
            given[number] = time.monotonic()
            pacer.send(socket.send, packet(number))
            number += 1
        await asyncio.sleep(0.01)
    return given


async def test_video_leaves_at_the_estimate_and_never_waits_longer_than_the_bound() -> None:
    pacer = Pacer(BandwidthEstimate(500_000))
    socket = Socket()
    given = await offer_video(pacer, socket, 1_500_000, 1.2)  # three times what the link takes
    await asyncio.sleep(MAX_QUEUE_DELAY + 0.05)
    start, end = socket.sent[0][0] + 0.3, socket.sent[0][0] + 1.1
    rate = socket.bits_between(start, end) / (end - start)
    assert 400_000 < rate < 600_000, rate
    waits = [at - given[int.from_bytes(data[:4], "big")] for at, data in socket.sent]
    # the bound, and a wake-up's lateness on a busy machine
    assert max(waits) < MAX_QUEUE_DELAY + 0.05, max(waits)
    assert pacer.dropped > len(given) / 2
    assert pacer.sent + pacer.dropped == len(given) == len(socket.sent) + pacer.dropped


async def test_video_under_the_estimate_goes_at_once_without_a_timer() -> None:
    pacer = Pacer(BandwidthEstimate(2_000_000))
    socket = Socket()
    given = await offer_video(pacer, socket, 1_000_000, 0.3)
    assert pacer.queued == 0 and pacer.dropped == 0 and len(socket.sent) == len(given)


async def test_audio_charged_outside_the_pacer_takes_its_share_first() -> None:
    pacer = Pacer(BandwidthEstimate(400_000))
    socket = Socket()

    async def audio() -> None:  # 20 ms packets of 172 bytes: 80 kbit/s on the wire with the overhead
        while True:
            pacer.charge(172)
            await asyncio.sleep(0.02)

    task = asyncio.ensure_future(audio())
    try:
        await offer_video(pacer, socket, 1_000_000, 1.2)
    finally:
        task.cancel()
    start = socket.sent[0][0] + 0.3
    rate = socket.bits_between(start, start + 0.8) / 0.8
    assert 250_000 < rate < 380_000, rate  # 400 less audio's 80 kbit/s


async def test_retransmissions_go_first_and_are_dropped_first_when_the_queue_is_long() -> None:
    pacer = Pacer(BandwidthEstimate(400_000))
    socket = Socket()
    # a keyframe's worth of video: more than half the bound's worth is queued
    for number in range(10):
        pacer.send(socket.send, packet(number))
    assert pacer.queue_delay > MAX_QUEUE_DELAY / 2
    assert not pacer.send(socket.send, packet(100), retransmission=True)
    assert pacer.retransmissions_dropped == 1
    await asyncio.sleep(0.3)
    # a short queue (two packets go at once on the bucket's burst, two wait): the retransmission goes before the
    # video queued before it
    for number in range(10, 14):
        pacer.send(socket.send, packet(number))
    assert 0 < pacer.queue_delay < MAX_QUEUE_DELAY / 2
    assert pacer.send(socket.send, packet(101), retransmission=True)
    await asyncio.sleep(0.3)
    order = [int.from_bytes(data[:4], "big") for _, data in socket.sent]
    assert 100 not in order
    assert order.index(101) < order.index(12)


async def test_a_queued_packet_is_stamped_again_with_its_real_send_time() -> None:
    pacer = Pacer(BandwidthEstimate(100_000))
    socket = Socket()
    stamp_at = 20
    for number in range(3):
        data = bytearray(packet(number))
        data[stamp_at : stamp_at + 3] = abs_send_time(time.time() - 10).to_bytes(3, "big")
        pacer.send(socket.send, bytes(data), stamp_at=stamp_at)
    assert pacer.queued >= 1
    await asyncio.sleep(0.3)
    assert len(socket.sent) == 3
    now = abs_send_time()
    stamps = [int.from_bytes(data[stamp_at : stamp_at + 3], "big") for _, data in socket.sent]
    assert (now - stamps[0]) % (1 << 24) > 9 * (1 << 18), "sent at once: stamped when written"
    # the last one waited: stamped as it left, not 10 s earlier
    assert (now - stamps[-1]) % (1 << 24) < (1 << 18)


async def test_padding_tops_what_is_sent_up_to_the_probe_rate() -> None:
    pacer = Pacer(BandwidthEstimate(1_000_000))
    padded: list[float] = []

    def pad(carrying_media: bool) -> int:
        padded.append(time.monotonic())
        return 272

    pacer.padders.append(pad)
    pacer.probe(800_000)
    await asyncio.sleep(0.6)
    pacer.probe(0)
    rate = len(padded) * (272 + WIRE_OVERHEAD) * 8 / 0.6
    assert 600_000 < rate < 900_000, rate
    count = len(padded)
    await asyncio.sleep(0.1)
    assert len(padded) == count, "padding stops with the probe"
    pacer.close()
