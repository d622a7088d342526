"""Synthetic participants, in their own process: they send pre-encoded media and count what they receive,
without decoding. Prints one JSON object with the measurements.

    python -m bench.sfu.loadgen forward --subscribers 5 --control-port 47000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import struct
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, cast

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtp import RtpPacket

from sfu import aiortc_adapter

from . import media
from .janus import JanusApi

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def percentile_ms(values: list[float], q: float) -> float | None:
    value = percentile(values, q)
    return None if value is None else round(value * 1000, 1)


class Control:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self.lock = asyncio.Lock()

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)

    async def call(self, **request: Any) -> dict[str, Any]:
        async with self.lock:
            self.writer.write(json.dumps(request).encode() + b"\n")
            response = json.loads(await self.reader.readline())
        if "error" in response:
            raise RuntimeError(response["error"])
        return cast(dict[str, Any], response)


class Counters:
    def __init__(self) -> None:
        self.measuring = False
        self.video_packets = 0
        self.rtx_packets = 0
        self.audio_packets = 0
        self.latencies: list[float] = []
        #: (subscriber index, publisher index) -> frame numbers received (any time: loss counts those sent in the
        #: window, the last of which arrive after it)
        self.frames: dict[tuple[int, int], set[int]] = {}


def media_payload_types(description: str, kind: str) -> set[int]:
    """Payload types of `kind`'s codecs in an SDP, RTX excluded (a retransmission is not a forwarded packet)."""
    parsed = aiortc_sdp.SessionDescription.parse(description)
    return {c.payloadType or 0 for m in parsed.media if m.kind == kind for c in m.rtp.codecs if c.name.lower() != "rtx"}


def frame_trailer(previous: bytes | None, last: bytes) -> bytes | None:
    """The trailer at the end of a VP8 frame whose last packet is `last` (it may straddle two packets)."""
    tail = vp8_depayload(last)
    if len(tail) < media.TRAILER.size and previous is not None:
        tail = vp8_depayload(previous) + tail
    return tail[-media.TRAILER.size :] if len(tail) >= media.TRAILER.size else None


class Receiver:
    """What every synthetic participant receives, counted at the RTP level and never decoded: audio packets, and
    video packets whose frames' trailers give loss and latency. Subclasses join and feed it packets."""

    def __init__(self, counters: Counters, index: int) -> None:
        self.counters = counters
        self.index = index
        self.join_seconds = 0.0
        self.join_started = 0.0
        self.first_media: float | None = None
        #: video frames received (any time): the warm-up waits until every subscription has some
        self.frames_seen: dict[int, int] = {}
        self._video_types: set[int] = set()
        self._previous: dict[int, tuple[int, bytes]] = {}

    async def join(self, control: Control, slots: bool) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def _on_audio(self, packet: RtpPacket | None = None) -> None:
        if self.first_media is None:
            self.first_media = time.perf_counter()
        if self.counters.measuring:
            self.counters.audio_packets += 1

    def _on_video(self, packet: RtpPacket) -> None:
        counters = self.counters
        if packet.payload_type not in self._video_types:
            if counters.measuring:
                counters.rtx_packets += 1
            return
        if counters.measuring:
            counters.video_packets += 1
        previous = self._previous.get(packet.ssrc)
        self._previous[packet.ssrc] = (packet.timestamp, packet.payload)
        if not packet.marker:
            return
        same_frame = previous is not None and previous[0] == packet.timestamp
        trailer = frame_trailer(previous[1] if same_frame and previous else None, packet.payload)
        if trailer is None:
            return
        magic, publisher, number, sent = media.TRAILER.unpack(trailer)
        if magic != media.MAGIC:
            return
        self.frames_seen[publisher] = self.frames_seen.get(publisher, 0) + 1
        counters.frames.setdefault((self.index, publisher), set()).add(number)
        if counters.measuring:
            counters.latencies.append(time.time() - sent)


class WebRtcPeer(Receiver):
    """A browser-alike: one aiortc peer connection.

    max-bundle, as browsers bundle: with aiortc's default policy an audio-only peer answers the slot re-offer with
    the second and later slots on a transport it never starts (see tests/sfu/test_audio_only.py). `address` is the
    one host candidate it gathers. A peer that answers the server's offer (Janus's subscribers) has no transceiver
    of its own (`offers=False`).
    """

    def __init__(
        self,
        counters: Counters,
        index: int,
        video: list[bytes] | None,
        audio: list[bytes] | None,
        address: str = "127.0.0.1",
        offers: bool = True,
    ) -> None:
        super().__init__(counters, index)
        self.address = address
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.video: media.PreEncodedVideo | None = None
        if audio is not None:
            self.pc.addTrack(media.PreEncodedAudio(audio))
        elif offers:
            self.pc.addTransceiver("audio", direction="recvonly")
        if video is not None:
            self.video = media.PreEncodedVideo(video, index)
            sender = self.pc.addTrack(self.video)
            aiortc_adapter.on_keyframe_request(sender, self.video.keyframe)
        self.id = ""
        self._tapped: set[int] = set()

    def _tap(self) -> None:
        if self.pc.remoteDescription is not None:
            self._video_types = media_payload_types(self.pc.remoteDescription.sdp, "video")
        for transceiver in self.pc.getTransceivers():
            if id(transceiver.receiver) in self._tapped:
                continue
            self._tapped.add(id(transceiver.receiver))
            if transceiver.kind == "audio":
                aiortc_adapter.tap_rtp_packets(transceiver.receiver, self._on_audio, consume=True)
            else:
                aiortc_adapter.tap_rtp_packets(transceiver.receiver, self._on_video, consume=True)
            aiortc_adapter.tap_encoded_frames(transceiver.receiver, lambda codec, frame: None)

    async def join(self, control: Control, slots: bool) -> None:
        aiortc_adapter.gather_host_candidates(self.pc, [self.address], None)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        started = time.perf_counter()
        response = await control.call(op="join_webrtc", offer=self.pc.localDescription.sdp)
        self.join_seconds = time.perf_counter() - started
        self.join_started = started
        self.id = response["id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response["answer"], type="answer"))
        self._tap()
        if slots:
            await self.take_slots(control)

    async def take_slots(self, control: Control) -> None:
        """Take the video slots the server adds now (one per other publisher, up to last-N), as after an ACK."""
        offer = (await control.call(op="slots_offer", id=self.id))["offer"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        self._tap()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await control.call(op="slots_answer", id=self.id, answer=self.pc.localDescription.sdp)

    async def publish_to_janus(self, api: JanusApi) -> int:
        """Publish this peer's offer in Janus's VideoRoom; returns its feed id."""
        aiortc_adapter.gather_host_candidates(self.pc, [self.address], None)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.join_started = time.perf_counter()
        feed, answer = await api.publish(self.pc.localDescription.sdp)
        self.join_seconds = time.perf_counter() - self.join_started
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self._tap()
        # Janus lists a feed to subscribers once its WebRTC connection is up ("No such feed" before)
        for _ in range(200):
            if self.pc.connectionState == "connected":
                break
            await asyncio.sleep(0.1)
        return feed

    async def subscribe_to_janus(self, api: JanusApi, feed: int) -> None:
        """Subscribe to `feed` in Janus's VideoRoom: answer Janus's offer (a new peer, built with offers=False)."""
        self.join_started = time.perf_counter()
        handle, offer = await api.subscribe(feed)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        aiortc_adapter.gather_host_candidates(self.pc, [self.address], None)
        self._tap()
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await api.start(handle, self.pc.localDescription.sdp)
        self.join_seconds = time.perf_counter() - self.join_started

    async def close(self) -> None:
        await self.pc.close()


def rtp_offer(audio_port: int, audio: tuple[int, str], direction: str, video_port: int | None = None) -> str:
    """A SIP phone's plain-RTP offer: one audio codec (payload type, rtpmap), and receive-only VP8 if `video_port`."""
    payload_type, rtpmap = audio
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0"]
    lines += [f"m=audio {audio_port} RTP/AVP {payload_type}", f"a=rtpmap:{payload_type} {rtpmap}", "a=ptime:20"]
    lines.append(f"a={direction}")
    if video_port is not None:
        lines += [f"m=video {video_port} RTP/AVP 96", "a=rtpmap:96 VP8/90000", "a=recvonly"]
    return "\r\n".join(lines) + "\r\n"


class Datagrams(asyncio.DatagramProtocol):
    """A UDP socket's datagrams, handed to a callback."""

    def __init__(self, received: Callable[[bytes], None]) -> None:
        self.received = received

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received(data)


class RtpSubscriber(Receiver):
    """A SIP video phone that only watches: PCMU audio and VP8 video, both receive-only, over plain RTP/AVP (no ICE,
    no SRTP: the SFU packetises the speaker's frames itself). Sends nothing: the leg sends to the offer's ports."""

    def __init__(self, counters: Counters, index: int) -> None:
        super().__init__(counters, index)
        self._transports: list[asyncio.BaseTransport] = []

    async def _socket(self, received: Callable[[bytes], None]) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: Datagrams(received), local_addr=("127.0.0.1", 0))
        self._transports.append(transport)
        return int(transport.get_extra_info("sockname")[1])

    async def join(self, control: Control, slots: bool) -> None:
        """Join through the control socket's ``join_rtp``; the leg's one video slot comes with the answer."""
        audio_port = await self._socket(lambda data: self._on_audio())
        video_port = await self._socket(self._video_datagram)
        offer = rtp_offer(audio_port, (0, "PCMU/8000"), "recvonly", video_port)
        self._video_types = media_payload_types(offer, "video")  # before the join: the first frames may come first
        self.join_started = time.perf_counter()
        response = await control.call(op="join_rtp", offer=offer)
        self.join_seconds = time.perf_counter() - self.join_started
        answer = aiortc_sdp.SessionDescription.parse(response["answer"])
        if not any(m.kind == "video" and m.port for m in answer.media):
            raise RuntimeError("the SFU refused the video stream")

    def _video_datagram(self, data: bytes) -> None:
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return
        self._on_video(packet)

    async def close(self) -> None:
        for transport in self._transports:
            transport.close()


class RtpPeers(asyncio.DatagramProtocol):
    """Many phones sending A-law from one ticker; each has its own socket."""

    def __init__(self, audio: list[bytes]) -> None:
        self.audio = audio
        self.peers: list[dict[str, Any]] = []
        self.measuring = False
        self.received = 0
        self.join_seconds: list[float] = []

    async def add(self, control: Control) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        offer = rtp_offer(port, (8, "PCMA/8000"), "sendrecv")
        started = time.perf_counter()
        response = await control.call(op="join_rtp", offer=offer)
        self.join_seconds.append(time.perf_counter() - started)
        description = aiortc_sdp.SessionDescription.parse(response["answer"])
        remote = (description.host, description.media[0].port)
        self.peers.append(
            {"transport": transport, "remote": remote, "ssrc": random.getrandbits(32), "seq": 0, "ts": 0, "n": 0}
        )

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.measuring:
            self.received += 1

    async def run(self) -> None:
        start = time.time()
        tick = 0
        offset = 0
        while True:
            for peer in self.peers:
                payload = self.audio[(tick + offset) % len(self.audio)]
                header = struct.pack("!BBHII", 0x80, 8, peer["seq"], peer["ts"], peer["ssrc"])
                peer["transport"].sendto(header + payload, peer["remote"])
                peer["seq"] = (peer["seq"] + 1) & 0xFFFF
                peer["ts"] = (peer["ts"] + 160) & 0xFFFFFFFF
                offset += 7
            offset = 0
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.02 - time.time()))


def make_subscriber(args: argparse.Namespace, counters: Counters, index: int) -> Receiver:
    if args.plain_rtp:
        return RtpSubscriber(counters, index)
    # a Janus subscriber answers Janus's offer: no transceiver of its own
    return WebRtcPeer(counters, index, None, None, args.peer_address, offers=not args.janus)


class SubscriberProcess:
    """Some of the subscribers, in a process of their own, driven over a pipe: 40 receiving aiortc peers (SRTP,
    DTLS, ICE in Python) are more than one process's core, and a saturated load generator would show as loss and
    latency of the server under test. Commands: join, status, measure, report, close (see `_serve_subscribers`)."""

    def __init__(self, args: argparse.Namespace, indexes: list[int]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_subscriber_process, args=(child, vars(args), indexes), daemon=True)
        self.process.start()

    async def call(self, command: str, value: Any = None) -> Any:
        await asyncio.to_thread(self.conn.send, (command, value))
        reply = await asyncio.to_thread(self.conn.recv)
        if isinstance(reply, dict) and "worker_error" in reply:
            raise RuntimeError(f"subscriber process: {reply['worker_error']}")
        return reply

    def stop(self) -> None:
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


def _subscriber_process(conn: Connection, options: dict[str, Any], indexes: list[int]) -> None:
    asyncio.run(_serve_subscribers(conn, argparse.Namespace(**options), indexes))


async def _serve_subscribers(conn: Connection, args: argparse.Namespace, indexes: list[int]) -> None:
    counters = Counters()
    subscribers = [make_subscriber(args, counters, index) for index in indexes]
    janus = JanusApi(args.janus) if args.janus else None
    while True:
        command, value = await asyncio.to_thread(conn.recv)
        reply: Any = None
        try:
            if command == "join" and janus is not None:
                await janus.open()
                for receiver in subscribers:
                    await cast(WebRtcPeer, receiver).subscribe_to_janus(janus, value)
            elif command == "join":
                control = Control(args.control_port, args.control_host)
                await control.open()
                for receiver in subscribers:
                    await receiver.join(control, slots=True)
            elif command == "status":
                reply = {
                    "seen": {r.index: r.frames_seen for r in subscribers},
                    "down": [
                        f"{r.index}:{r.pc.connectionState}"
                        for r in subscribers
                        if isinstance(r, WebRtcPeer) and r.pc.connectionState != "connected"
                    ],
                    "hangups": len(janus.hangups) if janus is not None else 0,
                }
            elif command == "measure":
                counters.measuring = bool(value)
            elif command == "report":
                reply = {
                    "video_packets": counters.video_packets,
                    "rtx_packets": counters.rtx_packets,
                    "audio_packets": counters.audio_packets,
                    "latencies": counters.latencies,
                    "frames": counters.frames,
                    "join_seconds": [r.join_seconds for r in subscribers],
                    "first_media": [r.first_media - r.join_started for r in subscribers if r.first_media is not None],
                }
            elif command == "close":
                for receiver in subscribers:
                    await receiver.close()
                if janus is not None:
                    await janus.close()
                conn.send(None)
                return
        except Exception as exc:
            reply = {"worker_error": repr(exc)}
        conn.send(reply)


def expected_subscriptions(
    args: argparse.Namespace, publishers: list[WebRtcPeer], subscriber_indexes: list[int]
) -> dict[int, set[int]]:
    """Subscriber index -> the publisher indexes whose video it should receive."""
    wanted: dict[int, set[int]] = {}
    shown = {p.index for p in publishers}
    slots = 1 if args.scenario == "forward" else args.last_n
    for index in subscriber_indexes:
        wanted[index] = set(sorted(shown)[:slots])
    if args.scenario == "full":
        for peer in publishers:
            wanted[peer.index] = set(sorted(shown - {peer.index})[:slots])
    return wanted


async def scenario(args: argparse.Namespace) -> dict[str, Any]:
    """One run against this project's SFU (its control socket) or, with `args.janus`, Janus's VideoRoom."""
    janus = JanusApi(args.janus) if args.janus else None
    if janus is not None and (args.scenario != "forward" or args.plain_rtp):
        raise SystemExit("against Janus, only the forward scenario with WebRTC subscribers")
    control = Control(args.control_port, args.control_host)
    if janus is None:
        await control.open()
    else:
        await janus.open()
    assets = media.load()
    counters = Counters()
    options: dict[str, Any] = {"max_participants": 200, "mixed_speakers": 3}
    publishers: list[WebRtcPeer] = []
    subscribers: list[Receiver] = []
    rtp = RtpPeers(assets["alaw"])
    publisher_audio = None if args.no_audio else assets["opus"]

    # the audio scenario has no video subscribers, whatever --subscribers says
    subscriber_indexes = [] if args.scenario == "audio" else [100 + i for i in range(args.subscribers)]
    workers = [
        SubscriberProcess(args, subscriber_indexes[i :: args.subscriber_processes])
        for i in range(min(args.subscriber_processes, len(subscriber_indexes)))
    ]

    def new_subscriber(index: int) -> Receiver:
        return make_subscriber(args, counters, index)

    if args.scenario == "forward":
        options.update(last_n=1)
        publishers = [WebRtcPeer(counters, 0, assets["vp8"], publisher_audio, args.peer_address)]
        subscribers = [] if workers else [new_subscriber(index) for index in subscriber_indexes]
        audio_peers = 0
    elif args.scenario == "audio":
        options.update(video=False)
        audio_peers = args.participants
    else:  # full room
        options.update(last_n=args.last_n)
        publishers = [
            WebRtcPeer(counters, i, assets["vp8"], publisher_audio, args.peer_address) for i in range(args.last_n)
        ]
        subscribers = [] if workers else [new_subscriber(index) for index in subscriber_indexes]
        audio_peers = args.participants - len(publishers) - len(subscriber_indexes)
    if janus is None:
        pid = (await control.call(op="room", options=options))["pid"]
    else:
        pid = args.server_pid
        await janus.create_room(publishers=len(publishers))
    rss_empty = rss_bytes(pid)
    problems: list[str] = []

    feed = None
    if janus is None:
        for peer in publishers:
            await peer.join(control, slots=False)
        if args.scenario == "full":
            # once all are in: a publisher's slots are as many as the other publishers (up to last-N)
            for peer in publishers:
                await peer.take_slots(control)
        for receiver in subscribers:
            await receiver.join(control, slots=True)
    else:
        feed = await publishers[0].publish_to_janus(janus)
        for receiver in subscribers:
            await cast(WebRtcPeer, receiver).subscribe_to_janus(janus, feed)
    await asyncio.gather(*(worker.call("join", feed) for worker in workers))
    for _ in range(audio_peers):
        await rtp.add(control)
    sender = asyncio.ensure_future(rtp.run())
    participants = len(publishers) + len(subscriber_indexes) + audio_peers
    wanted = expected_subscriptions(args, publishers, subscriber_indexes)
    web_peers = [p for p in [*publishers, *subscribers] if isinstance(p, WebRtcPeer)]

    async def status() -> tuple[dict[int, dict[int, int]], list[str], int]:
        """Frames seen per subscriber and source, connections not up (the load generator's own view, the same
        check whichever server it talks to), and Janus's hang-ups: this process's peers and the workers'."""
        seen = {p.index: p.frames_seen for p in [*publishers, *subscribers]}
        down = [f"{p.index}:{p.pc.connectionState}" for p in web_peers if p.pc.connectionState != "connected"]
        hangups = len(janus.hangups) if janus is not None else 0
        for reply in await asyncio.gather(*(worker.call("status") for worker in workers)):
            seen.update(reply["seen"])
            down += reply["down"]
            hangups += reply["hangups"]
        return seen, down, hangups

    async def missing_video() -> list[str]:
        seen = (await status())[0]
        return [f"{s}<-{p}" for s, sources in wanted.items() for p in sources if not seen[s].get(p)]

    # warm-up: at least args.warmup, and until every subscription shows video (or give up: the run is invalid)
    await asyncio.sleep(args.warmup)
    for _ in range(100):  # up to 20 s more
        if not await missing_video():
            break
        await asyncio.sleep(0.2)
    if missing := await missing_video():
        problems.append(f"no video before the window on {missing[:5]}")
    if down := (await status())[1]:
        problems.append(f"peers not connected before the window: {down[:5]}")
    load_before = os.getloadavg()[0]
    rss_full = rss_bytes(pid)
    before_stats = await control.call(op="stats") if janus is None else None
    cpu_before = cpu_seconds(pid)
    sent_before = {p.index: p.video.sent for p in publishers if p.video}
    counters.measuring = rtp.measuring = True
    await asyncio.gather(*(worker.call("measure", True) for worker in workers))
    started = time.perf_counter()
    await asyncio.sleep(args.window)
    counters.measuring = rtp.measuring = False
    await asyncio.gather(*(worker.call("measure", False) for worker in workers))
    sent_after = {p.index: p.video.sent for p in publishers if p.video}
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pid) - cpu_before
    load_after = os.getloadavg()[0]
    after_stats = await control.call(op="stats") if janus is None else None
    await asyncio.sleep(0.5)  # the window's last frames are still on their way

    # the run is only valid if every leg stayed up and every publisher's video reached the SFU throughout
    _, down, hangups = await status()
    if down:
        problems.append(f"peers not connected after the window: {down[:5]}")
    if hangups:
        problems.append(f"Janus hung up {hangups} handles")
    worker_joins: list[float] = []
    worker_first_media: list[float] = []
    for reply in await asyncio.gather(*(worker.call("report") for worker in workers)):
        counters.video_packets += reply["video_packets"]
        counters.rtx_packets += reply["rtx_packets"]
        counters.audio_packets += reply["audio_packets"]
        counters.latencies += reply["latencies"]
        for key, numbers in reply["frames"].items():
            counters.frames.setdefault(key, set()).update(numbers)
        worker_joins += reply["join_seconds"]
        worker_first_media += reply["first_media"]
    if before_stats is not None and after_stats is not None:
        if after_stats["participants"] != participants or before_stats["participants"] != participants:
            problems.append(f"participants {before_stats['participants']} -> {after_stats['participants']}")
        down = [state for state in before_stats["states"] + after_stats["states"] if state != "connected"]
        if down:
            problems.append(f"legs not connected: {down[:5]}")
        for name, frames in after_stats["source_frames"].items():
            got = frames - before_stats["source_frames"].get(name, 0)
            if got < 0.9 * args.window * media.FPS:
                problems.append(f"SFU received {got} frames from {name} in the window")

    def server_delta(key: str) -> Any:
        return None if before_stats is None or after_stats is None else after_stats[key] - before_stats[key]

    # loss: frames each subscription should have received (its publisher's frames in the window) vs received
    expected_frames = sum(sent_after[p] - sent_before[p] for sources in wanted.values() for p in sources)
    received_frames = sum(
        len([n for n in counters.frames.get((s, p), ()) if sent_before[p] <= n < sent_after[p]])
        for s, sources in wanted.items()
        for p in sources
    )
    video_loss = max(0.0, 1 - received_frames / expected_frames) if expected_frames else None
    expected_audio = audio_peers * elapsed * 50
    audio_loss = max(0.0, 1 - rtp.received / expected_audio) if expected_audio else None
    mixer_busy = server_delta("mixer_busy") or 0.0
    join_times = [p.join_seconds for p in [*publishers, *subscribers]] + rtp.join_seconds + worker_joins
    first_media = [p.first_media - p.join_started for p in [*publishers, *subscribers] if p.first_media is not None]
    first_media += worker_first_media
    if publishers and not counters.video_packets:
        problems.append("no video packet counted in the window")
    result = {
        "scenario": args.scenario,
        "server": "janus" if janus is not None else "sfu",
        "valid": not problems,
        "problems": problems,
        "load_before": round(load_before, 2),
        "load_after": round(load_after, 2),
        "publisher_audio": not args.no_audio,
        "participants": participants,
        "server_participants": None if after_stats is None else after_stats["participants"],
        "publishers": len(publishers),
        "subscribers": len(subscriber_indexes),
        "subscriber_processes": len(workers),
        "subscriber_legs": "rtp" if args.plain_rtp else "webrtc",
        "audio_peers": audio_peers,
        "window_s": round(elapsed, 2),
        "cpu_s": round(cpu, 3),
        "cpu_core_fraction": round(cpu / elapsed, 4),
        "video_packets": counters.video_packets,
        "rtx_packets": counters.rtx_packets,
        "cpu_per_1000_video_packets": round(cpu / (counters.video_packets / 1000), 4)
        if counters.video_packets
        else None,
        "video_packets_per_s": round(counters.video_packets / elapsed, 1),
        # what the plain-RTP legs sent in the window (their own packetiser): against video_packets, loss on the way
        "sfu_rtp_video_packets_sent": server_delta("rtp_video_sent"),
        "video_frame_loss": None if video_loss is None else round(video_loss, 5),
        "latency_p50_ms": percentile_ms(counters.latencies, 0.5),
        "latency_p99_ms": percentile_ms(counters.latencies, 0.99),
        "audio_loss": None if audio_loss is None else round(audio_loss, 5),
        "mixer_cpu_fraction": round(mixer_busy / elapsed, 4),
        "mixer_cpu_per_participant_ms_per_s": round(mixer_busy / elapsed / max(1, participants) * 1000, 3),
        "mixer_late_ticks": server_delta("mixer_late_ticks"),
        "rss_empty_mb": round(rss_empty / 2**20, 1),
        "rss_full_mb": round(rss_full / 2**20, 1),
        "rss_per_participant_kb": round((rss_full - rss_empty) / max(1, participants) / 1024, 1),
        "join_p50_ms": percentile_ms(join_times, 0.5),
        "join_p99_ms": percentile_ms(join_times, 0.99),
        "first_media_p50_ms": percentile_ms(first_media, 0.5),
        "received_frames": received_frames,
        "expected_frames": expected_frames,
        "server_sources": None if after_stats is None else after_stats["sources"],
        "server_slots": None if after_stats is None else after_stats["slots"][:4],
        "publisher_frames_sent": sent_after,
    }
    sender.cancel()
    if janus is None:
        await control.call(op="close")
    else:
        await janus.close()
    await asyncio.gather(*(worker.call("close") for worker in workers))
    for worker in workers:
        worker.stop()
    for leg in [*publishers, *subscribers]:
        await leg.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["forward", "audio", "full"])
    parser.add_argument("--control-port", type=int, default=47000)
    parser.add_argument("--control-host", default="127.0.0.1", help="the SFU's control socket address")
    parser.add_argument("--peer-address", default="127.0.0.1", help="the one address the WebRTC peers gather")
    parser.add_argument("--janus", default=None, help="drive Janus VideoRoom at this HTTP API URL instead")
    parser.add_argument("--server-pid", type=int, default=0, help="with --janus: its process, for CPU and memory")
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--last-n", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--no-audio", action="store_true", help="publishers send video only")
    parser.add_argument("--plain-rtp", action="store_true", help="subscribers are plain-RTP legs (SIP video phones)")
    parser.add_argument(
        "--subscriber-processes", type=int, default=0, help="run the subscribers in this many processes of their own"
    )
    print(json.dumps(asyncio.run(scenario(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
