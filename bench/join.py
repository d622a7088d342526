"""Join time through the whole SIP path: a browser-alike (aiortc media, SIP over WebSocket with digest) dials a
meeting on a running server; we time INVITE sent -> 200 OK, and INVITE sent -> first audio frame received from
the room. The server runs in its own process; one member already sits in the room sending a tone.

    .venv/bin/python -m bench.join [--runs 15]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import RTCSessionDescription

from bench.api_load import token
from bench.serving import PASSWORD, serving
from sfu.aiortc_adapter import gather_host_candidates
from tests.e2e.sipclient import SipClient
from tests.sfu.clients import WebRtcClient


async def member(session: aiohttp.ClientSession, base: str, credentials: tuple[str, str], tone: float | None) -> Any:
    sip = SipClient(*credentials, "meetings.local")
    await sip.connect_ws(session, base.replace("http", "ws") + "/api/asterisk/ws")
    assert (await sip.register()).status == 200
    media = WebRtcClient(credentials[0], tone, "red")

    async def answer(offer: bytes) -> bytes:
        await media.pc.setRemoteDescription(RTCSessionDescription(sdp=offer.decode(), type="offer"))
        gather_host_candidates(media.pc, ["127.0.0.1"], None)
        await media.pc.setLocalDescription(await media.pc.createAnswer())
        return media.pc.localDescription.sdp.encode()

    sip.on_offer = answer
    return sip, media


async def one_join(session: aiohttp.ClientSession, base: str, credentials: tuple[str, str]) -> tuple[float, float]:
    sip, media = await member(session, base, credentials, None)
    gather_host_candidates(media.pc, ["127.0.0.1"], None)
    await media.pc.setLocalDescription(await media.pc.createOffer())
    media.recording = True
    started = time.perf_counter()
    call = await sip.invite("meeting-guest", media.pc.localDescription.sdp.encode())
    answered = time.perf_counter() - started
    await media.pc.setRemoteDescription(RTCSessionDescription(sdp=call.answer.decode(), type="answer"))
    while not any(chunk.any() for chunk in media.audio):
        if time.perf_counter() - started > 10:
            raise RuntimeError("no media within 10 s")
        await asyncio.sleep(0.002)
    first_media = time.perf_counter() - started
    await sip.bye(call)
    await media.close()
    await sip.close()
    return answered, first_media


async def run(runs: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="meetings-join-"))
    async with serving(workdir, f"sqlite:///{workdir}/join.db", MEDIA__HOST_ADDRESSES="[127.0.0.1]") as server:
        base = server.base
        async with aiohttp.ClientSession() as session:
            admin = await token(session, base, "admin", PASSWORD)
            async with session.post(
                f"{base}/api/confd/1.1/users/me/meetings", json={"name": "join bench"}, headers={"X-Auth-Token": admin}
            ) as response:
                meeting = await response.json()
            username, password = base64.b64decode(meeting["guest_sip_authorization"]).decode().split(":", 1)
            host_sip, host_media = await member(session, base, (username, password), 440)
            gather_host_candidates(host_media.pc, ["127.0.0.1"], None)
            await host_media.pc.setLocalDescription(await host_media.pc.createOffer())
            host_call = await host_sip.invite("meeting-guest", host_media.pc.localDescription.sdp.encode())
            await host_media.pc.setRemoteDescription(
                RTCSessionDescription(sdp=host_call.answer.decode(), type="answer")
            )
            await asyncio.sleep(1)
            results = [await one_join(session, base, (username, password)) for _ in range(runs)]
            await host_sip.bye(host_call)
            await host_media.close()
            await host_sip.close()
        answered = [r[0] * 1000 for r in results]
        media = [r[1] * 1000 for r in results]
        return {
            "runs": runs,
            "invite_to_200_p50_ms": round(statistics.median(answered), 1),
            "invite_to_200_max_ms": round(max(answered), 1),
            "invite_to_first_audio_p50_ms": round(statistics.median(media), 1),
            "invite_to_first_audio_max_ms": round(max(media), 1),
            "load_average": os.getloadavg()[0],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print(asyncio.run(run(args.runs)), flush=True)


if __name__ == "__main__":
    main()
