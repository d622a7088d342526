"""A track of already-encoded media: `av.Packet`s handed to aiortc's sender, which packetises without encoding."""

from __future__ import annotations

import asyncio

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack


class EncodedTrack(MediaStreamTrack):
    """Whoever feeds it puts packets on `queue`; `None` (or stop) ends the sender's loop."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        packet = await self.queue.get()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            self.queue.put_nowait(None)
        super().stop()
