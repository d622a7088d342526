"""The SFU under test, in its own process, driven over a JSON-lines control socket on 127.0.0.1.

python -m bench.sfu.server --control-port 47000 [--host 10.0.0.2]   # media and control on --host (127.0.0.1)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from sfu import SFU, MediaSettings, Participant, RoomOptions
from sfu.rtpleg import RtpLeg
from sfu.webrtcleg import WebRtcLeg

PROFILE = None
if os.environ.get("SFU_BENCH_PROFILE"):
    import cProfile

    # SFU_BENCH_PROFILE_CPU=1: CPU time (time.process_time, a few us a call here) instead of wall time, which
    # charges a packet's send with the time the woken receiver runs before the sender gets the CPU back
    PROFILE = cProfile.Profile(time.process_time) if os.environ.get("SFU_BENCH_PROFILE_CPU") else cProfile.Profile()
    PROFILE.enable()


class BenchServer:
    def __init__(self, host: str) -> None:
        self.sfu = SFU(MediaSettings(host_addresses=(host,), rtp_port_min=40000, rtp_port_max=44999))
        self.participants: dict[str, Participant] = {}
        self.room_options = RoomOptions()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "room":
            self.room_options = RoomOptions(**request.get("options", {}))
            self.sfu.room("bench", self.room_options)
            return {"pid": os.getpid()}
        room = self.sfu.room("bench", self.room_options)
        if op in ("join_webrtc", "join_rtp"):
            started = time.perf_counter()
            join = room.join_webrtc if op == "join_webrtc" else room.join_rtp
            participant, answer = await join(request["offer"], {"name": request.get("name", "")})
            self.participants[participant.id] = participant
            return {"id": participant.id, "answer": answer, "elapsed": time.perf_counter() - started}
        if op == "slots_offer":
            return {"offer": await self.participants[request["id"]].create_slots_offer()}
        if op == "slots_answer":
            await self.participants[request["id"]].accept_slots_answer(request["answer"])
            return {}
        if op == "stats":
            stats = room.mixer.stats
            return {
                "pid": os.getpid(),
                "participants": len(room.participants),
                "mixer_busy": stats.busy_seconds,
                "mixer_ticks": stats.ticks,
                "mixer_late_ticks": stats.late_ticks,
                "mixer_decodes": stats.decodes,
                "states": [
                    p.leg.pc.connectionState for p in room.participants.values() if isinstance(p.leg, WebRtcLeg)
                ],
                "source_frames": {
                    p.id: p.video_source.frames for p in room.participants.values() if p.video_source is not None
                },
                "forwarded_frames": sum(s.forwarded for p in room.participants.values() for s in p.slots),
                "rtp_video_sent": sum(
                    s.packets_sent
                    for p in room.participants.values()
                    if isinstance(p.leg, RtpLeg)
                    for s in p.leg.video_streams.values()
                ),
                "sources": [
                    [p.video_source.frames, p.video_source.keyframes, p.video_source.keyframe_requests]
                    for p in room.participants.values()
                    if p.video_source is not None
                ],
                "slots": [
                    [s.active, s.codec_name, s.forwarded, s.current is not None, s.pending is not None]
                    for p in room.participants.values()
                    for s in p.slots
                ],
            }
        if op == "close":
            if PROFILE is not None:
                PROFILE.disable()
                PROFILE.dump_stats(os.environ["SFU_BENCH_PROFILE"])
            await self.sfu.close()
            self.participants.clear()
            return {}
        raise ValueError(op)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            try:
                response = await self.handle(json.loads(line))
            except Exception as exc:
                response = {"error": repr(exc)}
            writer.write(json.dumps(response).encode() + b"\n")
            await writer.drain()
        writer.close()


async def main(port: int, host: str) -> None:
    server = BenchServer(host)
    control = await asyncio.start_server(server.serve, host, port, limit=1 << 22)
    print("ready", flush=True)
    async with control:
        await control.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--control-port", type=int, default=47000)
    parser.add_argument("--host", default="127.0.0.1", help="the address of the media and of the control socket")
    options = parser.parse_args()
    asyncio.run(main(options.control_port, options.host))
