"""Every use of aiortc's (and aioice's) private names lives here, and nowhere else.

aiortc is pinned exactly (pyproject.toml); tests/sfu/test_aiortc_internals.py checks each name used below and fails
loudly when an upgrade changes one. What is borrowed, and why:

- ``RTCRtpReceiver.__decoder_queue`` (name-mangled): the receiver hands each reassembled encoded frame
  ``(codec, JitterFrame)`` to a decoder thread through it. Replacing it with a tap before the receiver starts makes
  sure a receiver whose media we take elsewhere never decodes anything.
- ``RTCRtpReceiver._handle_rtp_packet``: called for each RTP packet routed to the receiver; wrapped to read audio
  packets (payload and RFC 6464 level) before aiortc's jitter buffer.
- ``RTCDtlsTransport._handle_rtp_data``: called with each decrypted RTP packet of the bundle, before aiortc parses
  and routes it; wrapped so that the publisher's video packets go straight to the forwarder (aiortc's receiver,
  its jitter buffer and depayloader never see them: packet-level forwarding).
- ``RTCRtpReceiver._handle_rtcp_packet``: wrapped to read the publisher's sender reports (NTP/RTP mapping).
- ``RTCDtlsTransport._tx_srtp`` (the pylibsrtp session aiortc derived from DTLS) and ``RTCIceTransport._connection``
  (aioice, whose ``_nominated`` pair holds the socket and the peer's address): the slots' own sender protects and
  sends with them (`IceSrtpPath`), one ``sendto`` per packet, no task or queue in between.
- ``RTCRtpSender._ssrc`` / ``_rtx_ssrc``: the SSRCs aiortc put in the SDP for a slot's m-line, which our sender uses.
- ``RTCRtpSender._run_rtp`` / ``_run_rtcp`` / ``_handle_rtcp_packet`` and the name-mangled events
  ``__rtp_started`` / ``__rtp_exited`` / ``__rtcp_started`` / ``__rtcp_exited`` that ``stop()`` waits on: a slot's
  aiortc sender only negotiates; `take_over_sender` makes it send nothing (no packets, no sender reports of its
  own) and hands the receiver's RTCP (NACK, PLI/FIR, REMB, reports) to ours.
- ``RTCRtpSender._send_keyframe``: called when a peer sends PLI or FIR to a sender aiortc runs itself (a test or
  benchmark publisher with pre-encoded video); `on_keyframe_request` redirects it.
- ``RTCRtpSender._stream_id`` / ``_track_id`` (the ``a=msid`` aiortc writes): aiortc gives every sender of a peer
  connection the same msid stream; each video slot gets its own, and a new one when it is announced for another
  participant (browsers then fire a new ``track`` event, with the new stream).
- ``RTCRtpTransceiver._codecs`` / ``._headerExtensions`` and the ``CODECS`` / ``HEADER_EXTENSIONS`` tables that
  ``aiortc.rtcpeerconnection`` reads: ``createOffer`` renumbers every m-line with aiortc's own payload types and
  extension IDs, which a re-offer must not do (Chrome refuses a changed extension ID, and a started sender or
  receiver keeps the numbers it began with). ``create_reoffer`` lends it the numbers already negotiated.
- ``aiortc.clock.current_ntp_time`` / ``current_ms`` (public functions, replaced): see `use_fast_clock`.
- ``RTCIceGatherer._connection`` / aioice ``Connection._protocols``, ``Connection.get_component_candidates`` and
  ``aioice.ice.StunProtocol``: aioice never gathers 127.0.0.1 and binds ephemeral ports; host candidates are gathered
  here from the configured addresses, on ports from the configured range.
- aioice ``Connection.query_consent`` (the task ``connect()`` starts), ``_nominated``, ``build_request``,
  ``remote_password``, ``_query_consent_task`` and ``StunProtocol.request``: aioice sends each consent check once and
  closes the connection after 6 unanswered in a row, so a lossy or congested link ends the call in about 30 s with
  answers still coming; `keep_consent_through_loss` puts RFC 7675's own rule in its place.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import aioice.ice
import aioice.stun
import aiortc.clock
import aiortc.rtcpeerconnection
import pylibsrtp
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import CODECS, HEADER_EXTENSIONS
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtp import AnyRtcpPacket, RtpPacket

from .ports import PortAllocator
from .rtpsender import write_buffer_size

logger = logging.getLogger(__name__)

EncodedFrameHandler = Callable[[RTCRtpCodecParameters, JitterFrame], None]
RtpPacketHandler = Callable[[RtpPacket], None]

_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_PATCHED = "_sfu_host_candidates"
_CONSENT_PATCHED = "_sfu_consent"
_ORIGINAL_RTP_DATA = "_sfu_original_handle_rtp_data"
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


def tap_transport_rtp(transport: RTCDtlsTransport, handler: Callable[[bytes], bool]) -> None:
    """Call `handler` with each decrypted RTP packet `transport` receives, before aiortc parses it; a packet for
    which it returns True goes no further. One handler per transport (a later call replaces it)."""
    original = getattr(transport, _ORIGINAL_RTP_DATA, None)
    if original is None:
        original = transport._handle_rtp_data
        setattr(transport, _ORIGINAL_RTP_DATA, original)

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        if not handler(data):
            await original(data, arrival_time_ms=arrival_time_ms)

    transport._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]


def tap_rtcp_packets(receiver: RTCRtpReceiver, handler: Callable[[AnyRtcpPacket], None]) -> None:
    """Call `handler` with each RTCP packet routed to `receiver` (aiortc still handles it)."""
    original: Callable[[AnyRtcpPacket], Awaitable[None]] = receiver._handle_rtcp_packet

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        handler(packet)
        await original(packet)

    receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The SSRC and RTX SSRC aiortc announces for `sender` in its SDP."""
    return sender._ssrc, sender._rtx_ssrc


def take_over_sender(
    sender: RTCRtpSender,
    on_rtcp: Callable[[AnyRtcpPacket], None],
    run_rtcp: Callable[[], Awaitable[None]],
) -> None:
    """Make `sender` send nothing of its own: `on_rtcp` gets the RTCP its receiver sends about it, and `run_rtcp`
    runs while it is started (aiortc starts it with the m-line and cancels it on stop). Call before negotiation."""
    mangled = "_RTCRtpSender__"

    async def idle() -> None:
        getattr(sender, mangled + "rtp_started").set()
        try:
            await asyncio.Future()
        except asyncio.CancelledError:
            pass
        finally:
            getattr(sender, mangled + "rtp_exited").set()

    async def rtcp() -> None:
        getattr(sender, mangled + "rtcp_started").set()
        try:
            await run_rtcp()
        except asyncio.CancelledError:
            pass
        finally:
            getattr(sender, mangled + "rtcp_exited").set()

    async def handle_rtcp_packet(packet: AnyRtcpPacket) -> None:
        on_rtcp(packet)

    sender._run_rtp = lambda codec: idle()  # type: ignore[method-assign]
    sender._run_rtcp = rtcp  # type: ignore[method-assign]
    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


class IceSrtpPath:
    """Sends a WebRTC leg's packets ourselves: protected with the SRTP session aiortc derived from DTLS, sent on
    the ICE transport's nominated pair (nothing until DTLS is done, nothing after it stops)."""

    #: bytes waiting in the socket's user-space buffer past which video is dropped rather than queued
    BUFFER_LIMIT = 256 * 1024

    def __init__(self, transport: RTCDtlsTransport) -> None:
        self._dtls = transport
        self._connection: aioice.Connection = transport.transport._connection

    def _route(self) -> tuple[asyncio.DatagramTransport, tuple[str, int], Any] | None:
        session = self._dtls._tx_srtp
        pair = self._connection._nominated.get(1)
        if session is None or pair is None:
            return None
        transport = pair.protocol.transport
        if transport is None or transport.is_closing():
            return None
        return transport, pair.remote_addr, session

    def connected(self) -> bool:
        return self._route() is not None

    def send_rtp(self, data: bytes) -> bool:
        route = self._route()
        if route is None:
            return False
        transport, address, session = route
        if write_buffer_size(transport) > self.BUFFER_LIMIT:
            return False
        try:
            transport.sendto(session.protect(data), address)
        except pylibsrtp.Error:
            return False
        return True

    def send_rtcp(self, data: bytes) -> bool:
        route = self._route()
        if route is None:
            return False
        transport, address, session = route
        try:
            transport.sendto(session.protect_rtcp(data), address)
        except pylibsrtp.Error:
            return False
        return True


def on_keyframe_request(sender: RTCRtpSender, handler: Callable[[], None]) -> None:
    """Call `handler` whenever the remote peer asks aiortc's `sender` for a keyframe (PLI or FIR): for peers that
    send through aiortc's own sender (the benchmark's and tests' publishers)."""
    sender._send_keyframe = handler  # type: ignore[method-assign]


def set_msid(sender: RTCRtpSender, stream_id: str, track_id: str) -> None:
    """Give `sender` its own msid, stream and track ids (call before the offer or answer is created)."""
    sender._stream_id = stream_id
    sender._track_id = track_id


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


#: RFC 7675: a consent check every 5 s (randomised by +-20 %), consent lost 30 s after the last answer
CONSENT_INTERVAL = 5.0
CONSENT_TIMEOUT = 30.0
#: each check is sent again (the same transaction) 0.5 and 1.5 s after the first try while it has no answer (RFC
#: 8489's RTO of 500 ms, doubling); it gives up 3.5 s after the first try, before the next check is due
CONSENT_RETRANSMISSIONS = 2
#: after a check without an answer the next starts this soon, so a link that comes back is seen within seconds
#: (a check every 5 s could let consent expire moments after the link is back)
CONSENT_RETRY_INTERVAL = 1.0


def keep_consent_through_loss(pc: RTCPeerConnection) -> None:
    """Make `pc`'s ICE keep consent as RFC 7675 says: checks retransmitted, the connection closed only when no check
    has been answered for `CONSENT_TIMEOUT` seconds. Call before ICE starts (with `gather_host_candidates`)."""
    for gatherer in _gatherers(pc):
        connection: aioice.Connection = gatherer._connection
        if getattr(connection, _CONSENT_PATCHED, False):
            continue
        setattr(connection, _CONSENT_PATCHED, True)
        connection.query_consent = _consent_keeper(connection)  # type: ignore[method-assign]


def _consent_keeper(connection: aioice.Connection) -> Callable[[], Coroutine[Any, Any, None]]:
    async def check(pair: Any) -> bool:
        assert connection.remote_password is not None
        try:
            await pair.protocol.request(
                connection.build_request(pair, nominate=False),
                pair.remote_addr,
                integrity_key=connection.remote_password.encode("utf8"),
                retransmissions=CONSENT_RETRANSMISSIONS,
            )
        except aioice.stun.TransactionError:
            return False
        return True

    async def query_consent() -> None:
        answered = time.monotonic()
        interval = CONSENT_INTERVAL
        while True:
            left = answered + CONSENT_TIMEOUT - time.monotonic()
            await asyncio.sleep(max(0.0, min(left, interval * (0.8 + 0.4 * random.random()))))
            if time.monotonic() - answered >= CONSENT_TIMEOUT:
                logger.info("ICE consent expired: no check answered for %.0f s", time.monotonic() - answered)
                connection._query_consent_task = None
                await connection.close()
                return
            pairs = list(connection._nominated.values())
            if pairs and all(await asyncio.gather(*(check(pair) for pair in pairs))):
                answered, interval = time.monotonic(), CONSENT_INTERVAL
            else:
                interval = CONSENT_RETRY_INTERVAL

    return query_consent


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
