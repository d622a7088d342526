"""Every use of aiortc's (and aioice's) private names lives here, and nowhere else.

aiortc is pinned exactly (pyproject.toml); tests/sfu/test_aiortc_internals.py checks each name used below and fails
loudly when an upgrade changes one. What is borrowed, and why:

- ``RTCRtpReceiver.__decoder_queue`` (name-mangled): the receiver hands each reassembled encoded frame
  ``(codec, JitterFrame)`` to a decoder thread through it. Replacing it with a tap before the receiver starts turns
  the receiver into an encoded-frame source: nothing is decoded, frames go to the forwarder (encoded passthrough).
- ``RTCRtpReceiver._handle_rtp_packet``: called for each RTP packet routed to the receiver; wrapped to read audio
  packets (payload and RFC 6464 level) before aiortc's jitter buffer, and to learn a video publisher's media SSRC.
- ``RTCRtpReceiver._send_rtcp_pli``: sends a keyframe request upstream to a given media SSRC.
- ``RTCRtpSender._send_keyframe``: called when a subscriber sends PLI or FIR; redirected to the forwarder, since a
  passthrough sender has no encoder to force.
- ``RTCRtpSender._stream_id``: aiortc gives every sender of a peer connection the same msid stream; each video slot
  gets its own.
- ``RTCRtpTransceiver._codecs`` / ``._headerExtensions`` and the ``CODECS`` / ``HEADER_EXTENSIONS`` tables that
  ``aiortc.rtcpeerconnection`` reads: ``createOffer`` renumbers every m-line with aiortc's own payload types and
  extension IDs, which a re-offer must not do (Chrome refuses a changed extension ID, and a started sender or
  receiver keeps the numbers it began with). ``create_reoffer`` lends it the numbers already negotiated.
- ``aiortc.clock.current_ntp_time`` / ``current_ms`` (public functions, replaced): see `use_fast_clock`.
- ``RTCIceGatherer._connection`` / aioice ``Connection._protocols``, ``Connection.get_component_candidates`` and
  ``aioice.ice.StunProtocol``: aioice never gathers 127.0.0.1 and binds ephemeral ports; host candidates are gathered
  here from the configured addresses, on ports from the configured range.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aioice.ice
import aiortc.clock
import aiortc.rtcpeerconnection
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import CODECS, HEADER_EXTENSIONS
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtp import RtpPacket

from .ports import PortAllocator

EncodedFrameHandler = Callable[[RTCRtpCodecParameters, JitterFrame], None]
RtpPacketHandler = Callable[[RtpPacket], None]

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_PATCHED = "_sfu_host_candidates"
RECEIVE_BUFFER_SIZE = 1 << 20


class _EncodedFrameTap(queue.Queue):
    """Stands in for the receiver's decoder queue: frames go to a handler on the event loop, never to a decoder.

    ``None`` (the receiver stopping) is still queued, so aiortc's idle decoder thread ends as usual.
    """

    def __init__(self, handler: EncodedFrameHandler) -> None:
        super().__init__()
        self.handler = handler

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None, block, timeout)
        else:
            codec, frame = item
            self.handler(codec, frame)


def tap_encoded_frames(receiver: RTCRtpReceiver, handler: EncodedFrameHandler) -> None:
    """Receive `receiver`'s reassembled encoded frames instead of decoding them. Call before the receiver starts."""
    if getattr(receiver, _DECODER_THREAD) is not None:
        raise RuntimeError("the receiver has already started its decoder")
    if not isinstance(getattr(receiver, _DECODER_QUEUE), queue.Queue):
        raise RuntimeError("aiortc's RTCRtpReceiver decoder queue changed")
    setattr(receiver, _DECODER_QUEUE, _EncodedFrameTap(handler))


def tap_rtp_packets(receiver: RTCRtpReceiver, handler: RtpPacketHandler, *, consume: bool) -> None:
    """Call `handler` with each RTP packet routed to `receiver`; with `consume`, aiortc never sees them."""
    original: Callable[..., Awaitable[None]] = receiver._handle_rtp_packet

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        handler(packet)
        if not consume:
            await original(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the sender of `media_ssrc` (a publisher's primary SSRC) for a keyframe."""
    await receiver._send_rtcp_pli(media_ssrc)


def on_keyframe_request(sender: RTCRtpSender, handler: Callable[[], None]) -> None:
    """Call `handler` whenever the remote peer asks `sender` for a keyframe (PLI or FIR)."""
    sender._send_keyframe = handler  # type: ignore[method-assign]


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """Give `sender` its own msid stream id (call before the offer or answer is created)."""
    sender._stream_id = stream_id


def _gatherers(pc: RTCPeerConnection) -> list[Any]:
    gatherers = []
    for transceiver in pc.getTransceivers():
        gatherer = transceiver.receiver.transport.transport.iceGatherer
        if gatherer not in gatherers:
            gatherers.append(gatherer)
    return gatherers


def gather_host_candidates(pc: RTCPeerConnection, addresses: Sequence[str], ports: PortAllocator | None) -> None:
    """Make `pc` offer host candidates on exactly `addresses` (127.0.0.1 included), on ports from `ports`.

    Call after transceivers exist and before `setLocalDescription` (which gathers); safe to call again.
    """
    for gatherer in _gatherers(pc):
        connection: aioice.Connection = gatherer._connection
        if getattr(connection, _PATCHED, False):
            continue
        setattr(connection, _PATCHED, True)
        connection.get_component_candidates = _host_candidates_gatherer(  # type: ignore[method-assign,assignment]
            connection, tuple(addresses), ports
        )


def _host_candidates_gatherer(
    connection: aioice.Connection, addresses: tuple[str, ...], ports: PortAllocator | None
) -> Callable[..., Awaitable[list[Candidate]]]:
    async def get_component_candidates(component: int, *args: Any, **kwargs: Any) -> list[Any]:
        # aioice passes the machine's addresses (never loopback) and a STUN/TURN timeout: both unused here
        loop = asyncio.get_running_loop()

        def protocol_factory() -> aioice.ice.StunProtocol:
            return aioice.ice.StunProtocol(connection)

        candidates: list[Candidate] = []
        for address in addresses:
            if ports is not None:
                sock = ports.bind(address)
                _, protocol = await loop.create_datagram_endpoint(protocol_factory, sock=sock)
            else:
                _, protocol = await loop.create_datagram_endpoint(protocol_factory, local_addr=(address, 0))
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                # video keyframes arrive as bursts of packets: give the kernel room for them (as aioice does)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_SIZE)
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            connection._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        return candidates

    return get_component_candidates


def _negotiated(pc: RTCPeerConnection, kind: str) -> tuple[list[Any], list[Any]] | None:
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind and transceiver.mid is not None and transceiver._codecs:
            return list(transceiver._codecs), list(transceiver._headerExtensions)
    return None


def _free(taken: set[int], low: int, high: int) -> int:
    return next(number for number in range(low, high + 1) if number not in taken)


async def create_reoffer(pc: RTCPeerConnection) -> RTCSessionDescription:
    """``createOffer`` that keeps the payload types and RTP header extension IDs already negotiated.

    Each kind takes the numbers of its first negotiated m-line (a kind not negotiated yet takes aiortc's own), and
    within the BUNDLE one extension ID means one extension and one payload type one codec, across kinds too.
    ``createOffer`` runs without yielding, so lending it other tables for its duration affects nothing else.
    """
    codecs: dict[str, list[Any]] = {}
    extensions: dict[str, list[Any]] = {}
    for kind in ("audio", "video"):
        negotiated = _negotiated(pc, kind)
        codecs[kind], extensions[kind] = negotiated or (list(CODECS[kind]), list(HEADER_EXTENSIONS[kind]))
    ids = {ext.uri: ext.id for ext in extensions["audio"]}
    for kind in ("video",):
        aligned = []
        for ext in extensions[kind]:
            number = ids.get(ext.uri)
            if number is None:
                number = ext.id if ext.id not in ids.values() else _free(set(ids.values()), 1, 14)
                ids[ext.uri] = number
            aligned.append(RTCRtpHeaderExtensionParameters(id=number, uri=ext.uri))
        extensions[kind] = aligned
    audio_types = {codec.payloadType for codec in codecs["audio"]}
    if any(codec.payloadType in audio_types for codec in codecs["video"]):
        # Only when video was never negotiated (aiortc's numbers): move it clear of the audio payload types.
        taken = set(audio_types)
        renumbered: dict[int, int] = {}
        moved = []
        for codec in codecs["video"]:
            number = _free(taken, 96, 127)
            taken.add(number)
            renumbered[codec.payloadType] = number
            moved.append(codec)
        codecs["video"] = []
        for codec in moved:
            copy = RTCRtpCodecParameters(
                mimeType=codec.mimeType,
                clockRate=codec.clockRate,
                channels=codec.channels,
                payloadType=renumbered[codec.payloadType],
                rtcpFeedback=codec.rtcpFeedback,
                parameters=dict(codec.parameters),
            )
            apt = copy.parameters.get("apt")
            if isinstance(apt, int):
                copy.parameters["apt"] = renumbered.get(apt, apt)
            codecs["video"].append(copy)
    module: Any = aiortc.rtcpeerconnection
    saved = module.CODECS, module.HEADER_EXTENSIONS
    module.CODECS, module.HEADER_EXTENSIONS = codecs, extensions
    try:
        return await pc.createOffer()
    finally:
        module.CODECS, module.HEADER_EXTENSIONS = saved


_NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP epoch) to 1970-01-01


def _ntp_now() -> int:
    now = time.time()
    seconds = int(now)
    return ((seconds + _NTP_UNIX_OFFSET) << 32) | int((now - seconds) * (1 << 32))


def _ms_now() -> int:
    return int((time.time() + _NTP_UNIX_OFFSET) * 1000)


def use_fast_clock() -> None:
    """Replace ``aiortc.clock.current_ntp_time`` and ``current_ms`` by equivalents on ``time.time()``.

    aiortc's go through timezone-aware datetimes (about 4 us a call here) and its sender calls the first twice per
    RTP packet sent (abs-send-time, sender report), its DTLS transport the second once per packet received.
    """
    aiortc.clock.current_ntp_time = _ntp_now
    aiortc.clock.current_ms = _ms_now
