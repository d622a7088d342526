"""What the pacer adds per forwarded packet, in this process: `SlotSender.forward` (rewrite, history, send) on a
path that only counts, without a pacer and with one whose estimate lets every packet go at once (the common case,
its fast path), alternated, medians of the rounds. Prints one JSON object.

    .venv/bin/python -m bench.sfu.pacer_cost
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

from aiortc.rtp import RtpPacket

from sfu.bandwidth import BandwidthEstimate
from sfu.pacer import Pacer
from sfu.rtprewriter import MediaPacket
from sfu.rtpsender import SlotSender

PACKETS = 20_000
ROUNDS = 7


class CountingPath:
    def __init__(self) -> None:
        self.sent = 0

    def connected(self) -> bool:
        return True

    def send_rtp(self, data: bytes) -> bool:
        self.sent += 1
        return True

    def send_rtcp(self, data: bytes) -> bool:
        return True


def packets() -> list[MediaPacket]:
    made = []
    for number in range(PACKETS):
        payload = bytes([0x90, 0x80]) + (0x8000 | (number // 5) & 0x7FFF).to_bytes(2, "big") + bytes(1100)
        data = RtpPacket(payload_type=96, sequence_number=number & 0xFFFF, timestamp=number // 5 * 3000)
        data.payload = payload
        packet = MediaPacket.parse(data.serialize(), "VP8", 0.0)
        assert packet is not None
        made.append(packet)
    return made


def us_per_packet(sender: SlotSender, source: object, batch: list[MediaPacket]) -> float:
    started = time.process_time()
    for packet in batch:
        sender.forward(source, packet)
    return (time.process_time() - started) / len(batch) * 1e6


async def main() -> None:
    batch = packets()
    source = object()
    plain: list[float] = []
    paced: list[float] = []
    for _ in range(ROUNDS):
        plain.append(us_per_packet(SlotSender(CountingPath(), 1, 96, abs_send_time_id=3), source, batch))
        pacer = Pacer(BandwidthEstimate(1e12))  # never short of tokens: the fast path, as on a link with room
        paced.append(us_per_packet(SlotSender(CountingPath(), 1, 96, abs_send_time_id=3, pacer=pacer), source, batch))
        pacer.close()
    without, with_pacer = statistics.median(plain), statistics.median(paced)
    print(
        json.dumps(
            {
                "packets": PACKETS,
                "rounds": ROUNDS,
                "us_per_packet_without_pacer": round(without, 2),
                "us_per_packet_with_pacer": round(with_pacer, 2),
                "pacer_us_per_packet": round(with_pacer - without, 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
