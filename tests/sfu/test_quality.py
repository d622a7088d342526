"""Call quality: the receiver-report arithmetic (RFC 3550), the reception statistics, the per-call figures, and a
phone's audio RTCP on real sockets (the phone side written with aiortc's RTCP classes, not ours)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from aiortc.rtp import RtcpPacket, RtcpReceiverInfo, RtcpRrPacket, RtcpSenderInfo, RtcpSrPacket

from sfu import SFU, RoomOptions, audiortcp
from sfu.quality import (
    CallQuality,
    InboundStream,
    LinkState,
    MediaCounters,
    ReceiverReport,
    ReceptionStatistics,
    SenderReportLog,
    ntp_middle,
    ntp_time,
    round_trip_time,
)
from sfu.rtpleg import RtpLeg
from sfu.rtprewriter import vp8_resolution
from tests.sfu.clients import RtpPhone, WebRtcClient
from tests.waiting import until

# -- the round trip (RFC 3550 section 6.4.1)


def test_round_trip_is_the_time_since_our_report_less_the_receivers_delay() -> None:
    sent = 1_800_000_000.25
    lsr = ntp_middle(ntp_time(sent))
    # the receiver held our report 100 ms, its report arrived 150 ms after ours left: 50 ms of round trip
    measured = round_trip_time(ntp_time(sent + 0.150), lsr, int(0.100 * 65536))
    assert measured == pytest.approx(0.050, abs=2 / 65536)
    # RFC 3550's own example: A = 0xb710:8000 (46864.500 s), LSR = 0xb705:2000, DLSR = 0x0005:4000 (5.250 s)
    arrival = (0xB710 << 32) | (0x8000 << 16)
    assert round_trip_time(arrival, 0xB7052000, 0x00054000) == pytest.approx(6.125)


def test_round_trip_across_the_wrap_of_the_middle_32_bits() -> None:
    lsr = 0xFFFFFF00  # 256/65536 s before the middle bits wrap
    arrival = (0x0001 << 48) | (0x0000_0100 << 16)  # 256/65536 s after (the seconds' high bits moved on)
    assert round_trip_time(arrival, lsr, 0) == pytest.approx(512 / 65536)


def test_no_round_trip_without_an_echoed_report_or_when_impossible() -> None:
    now = ntp_time(1_800_000_000.0)
    assert round_trip_time(now, 0, 0) is None  # the receiver had no sender report of ours yet
    # a DLSR longer than the time since our report: not one of ours, or a broken clock
    assert round_trip_time(now, ntp_middle(now), 65536) is None
    # short of zero by the rounding of DLSR to 1/65536 s on a fast link: zero
    assert round_trip_time(now, ntp_middle(now), 1) == 0.0


def test_only_echoes_of_our_recent_sender_reports_count() -> None:
    log = SenderReportLog()
    first = ntp_time(1_800_000_000.0)
    log.sent(first)
    later = ntp_time(1_800_000_000.2)
    assert log.round_trip_time(ntp_middle(first), int(0.15 * 65536), later) == pytest.approx(0.05, abs=1e-4)
    assert log.round_trip_time(ntp_middle(first) + 1000, 0, later) is None
    for step in range(SenderReportLog.KEEP):
        log.sent(ntp_time(1_800_000_001.0 + step))
    assert log.round_trip_time(ntp_middle(first), 0, later) is None  # forgotten


# -- reception statistics (RFC 3550 appendix A.3 and A.8)


def test_loss_counts_what_never_came_across_a_sequence_wrap() -> None:
    statistics = ReceptionStatistics(65530, 8000)
    arrival = 100.0
    received = [65530, 65531, 65533, 65534, 65535, 0, 1, 3, 2]  # 65532 lost, 2 late
    steps = [statistics.add(sequence, 160 * index, arrival + 0.02 * index) for index, sequence in enumerate(received)]
    assert steps == [0, 1, 2, 1, 1, 1, 1, 2, 0]
    assert statistics.expected == 10 and statistics.cycles == 1 << 16
    assert statistics.lost == 1  # 65532
    assert statistics.add(6, 0, arrival + 1) == 3  # a gap of two before it
    assert statistics.lost == 3


def test_report_block_fraction_is_of_the_interval() -> None:
    statistics = ReceptionStatistics(0, 8000)
    for sequence in (0, 1, 2, 5, 6, 7, 8, 9):  # 10 expected, 8 received
        statistics.add(sequence, 160 * sequence, 0.02 * sequence)
    fraction, lost, highest, jitter, lsr, dlsr = statistics.report_block(1.0)
    assert (fraction, lost, highest, jitter, lsr, dlsr) == (2 * 256 // 10, 2, 9, 0, 0, 0)
    for sequence in range(10, 20):
        statistics.add(sequence, 160 * sequence, 0.02 * sequence)
    statistics.sender_report(ntp_time(1_800_000_000.0), 1.0)
    fraction, lost, *_, lsr, dlsr = statistics.report_block(1.5)
    assert fraction == 0 and lost == 2 and lsr == ntp_middle(ntp_time(1_800_000_000.0)) and dlsr == 32768


def test_jitter_is_zero_for_regular_arrivals_and_grows_with_irregular_ones() -> None:
    regular = ReceptionStatistics(0, 8000)
    irregular = ReceptionStatistics(0, 8000)
    for sequence in range(50):  # times exact in binary, so that only the arrivals' irregularity counts
        regular.add(sequence, 1000 * sequence, 0.125 * sequence)
        irregular.add(sequence, 1000 * sequence, 0.125 * sequence + (0.0625 if sequence % 2 else 0.0))
    assert regular.jitter == 0.0
    # 500 timestamp units (62.5 ms) of transit change at every packet: A.8's estimate tends to 62.5 ms
    assert 0.05 < irregular.jitter <= 0.0625


def test_inbound_stream_keeps_the_counts_of_a_restarted_sender() -> None:
    stream = InboundStream(8000)
    for sequence in (100, 101, 103):
        stream.add(1, sequence, 0, 0.0, 160)
    for sequence in (7, 8):
        stream.add(2, sequence, 0, 0.0, 160)  # a new SSRC: numbering afresh, no loss for the jump
    assert (stream.packets, stream.lost, stream.octets) == (5, 1, 800)


# -- the per-call figures


def test_call_quality_bitrates_loss_round_trips_and_summary() -> None:
    quality = CallQuality(started=10.0)
    first = MediaCounters(audio_packets_in=100, audio_bytes_in=16000, audio_packets_out=100, audio_bytes_out=8000)
    quality.sample(
        LinkState(first, 0.020, {"audio": ReceiverReport(0.0, 0, 0.002)}, {"audio": 0.001}, (640, 480), [("p2", None)]),
        12.0,
    )
    second = MediaCounters(
        audio_packets_in=190, audio_bytes_in=30400, audio_lost_in=10, audio_packets_out=200, audio_bytes_out=16000
    )
    quality.sample(LinkState(second, 0.040, {"audio": ReceiverReport(0.25, 25, 0.004)}), 14.0)
    now = quality.to_json()
    assert now["duration"] == 4.0
    assert now["round_trip_time"] == 0.04 and now["round_trip_time_avg"] == 0.03 and now["round_trip_time_max"] == 0.04
    audio_in, audio_out = now["audio"]["in"], now["audio"]["out"]
    assert audio_in["bitrate"] == 8 * 14400 / 2 and audio_in["packets"] == 190 and audio_in["packets_lost"] == 10
    assert audio_in["fraction_lost"] == 0.1  # 10 of the 100 expected in the interval
    assert audio_out["bitrate"] == 32000 and audio_out["fraction_lost"] == 0.25 and audio_out["jitter"] == 0.004
    assert now["video"]["in"]["fraction_lost"] is None  # nothing received: no loss figure at all
    summary = quality.summary()
    assert summary["audio_in"]["bitrate_avg"] == round(8 * 30400 / 4) and summary["audio_in"]["loss"] == 0.05
    assert summary["audio_out"]["fraction_lost_max"] == 0.25 and summary["audio_out"]["jitter_max"] == 0.004
    line = quality.describe()
    assert "rtt avg 30.0 ms max 40.0 ms" in line and "audio in 61 kbit/s, 10 lost (5.00 %)" in line
    assert "video" not in line  # no video either way


def test_vp8_keyframe_header_gives_the_resolution() -> None:
    descriptor = bytes([0x90, 0x80, 0x12])  # X, S, partition 0; picture ID 0x12
    header = (
        bytes([0x50, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + (640).to_bytes(2, "little") + (480 | 0x4000).to_bytes(2, "little")
    )
    packet = bytes(12) + descriptor + header + bytes(20)
    assert vp8_resolution(packet, 12 + 3, len(packet)) == (640, 480)  # scale bits aside
    interframe = bytes(12) + descriptor + bytes([0x51]) + header[1:] + bytes(20)
    assert vp8_resolution(interframe, 15, len(interframe)) is None


# -- a phone's audio RTCP, on real sockets


@pytest.fixture
def quick_reports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(audiortcp, "REPORT_INTERVAL", 0.4)
    yield


async def test_a_phones_receiver_reports_give_its_round_trip_and_loss(sfu: SFU, quick_reports: None) -> None:
    phone = RtpPhone(440.0)
    await phone.open()
    rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp.bind(("127.0.0.1", 0))
    rtcp.setblocking(False)
    offer = phone.offer().replace("a=sendrecv", f"a=rtcp:{rtcp.getsockname()[1]}\r\na=sendrecv")
    room = sfu.room("quality")
    participant, _ = await room.join_rtp(offer, {"name": "phone"})
    leg = participant.leg
    assert isinstance(leg, RtpLeg)
    loop = asyncio.get_running_loop()
    try:
        phone.start(("127.0.0.1", leg.local_port))
        await until(lambda: leg.packets_received >= 10, 5, "the phone's packets")
        phone.seq = (phone.seq + 2) & 0xFFFF  # two packets lost on the way
        await until(lambda: leg.packets_received >= 20, 5, "more of the phone's packets")

        # our sender report reaches the phone's RTCP port, from the port above our RTP port (a fresh one: those
        # that came meanwhile are dropped)
        while True:
            try:
                rtcp.recv(1500)
            except BlockingIOError:
                break
        data, source = await asyncio.wait_for(loop.sock_recvfrom(rtcp, 1500), 5)
        assert source == ("127.0.0.1", leg.local_port + 1)
        ours = next(p for p in RtcpPacket.parse(data) if isinstance(p, RtcpSrPacket))
        assert ours.ssrc == leg.rtcp.ssrc and ours.sender_info.packet_count > 0
        # the phone holds it 30 ms, then reports: its own sender report and a block about our stream
        await asyncio.sleep(0.03)
        phone_ntp = ntp_time(time.time())
        block = RtcpReceiverInfo(ours.ssrc, 64, 5, 1000, 48, ntp_middle(ours.sender_info.ntp_timestamp), 1966)
        report = RtcpSrPacket(phone.ssrc, RtcpSenderInfo(phone_ntp, phone.ts, 20, 3200), [block])
        rtcp.sendto(bytes(report), source)
        await until(lambda: leg.rtcp.round_trip_time is not None, 5, "the round trip")
        assert leg.rtcp.round_trip_time is not None and 0 <= leg.rtcp.round_trip_time < 0.2  # loopback, loaded

        # our next reports echo the phone's sender report and count the two lost packets
        for _ in range(5):
            data, _ = await asyncio.wait_for(loop.sock_recvfrom(rtcp, 1500), 5)
            head = RtcpPacket.parse(data)[0]
            assert isinstance(head, (RtcpSrPacket, RtcpRrPacket))
            about = next(b for b in head.reports if b.ssrc == phone.ssrc)
            if about.lsr:
                break
        assert about.lsr == ntp_middle(phone_ntp) and about.packets_lost == 2

        await participant.sample_quality()
        figures = participant.quality.to_json()
        assert figures["round_trip_time"] == pytest.approx(leg.rtcp.round_trip_time, abs=1e-4)
        assert figures["audio"]["out"]["fraction_lost"] == 0.25 and figures["audio"]["out"]["packets_lost"] == 5
        assert figures["audio"]["out"]["jitter"] == 48 / 8000
        assert figures["audio"]["in"]["packets_lost"] == 2 and figures["audio"]["in"]["packets"] >= 20
        assert figures["audio"]["out"]["packets"] > 0
    finally:
        rtcp.close()
        await phone.close()
        await participant.close()
    assert participant.quality.summary()["audio_in"]["packets_lost"] == 2
    totals = sfu.media_counters()
    assert totals.audio_lost_in == 2 and totals.audio_packets_in >= 20 and totals.audio_lost_out == 5


@pytest.mark.slow
async def test_what_a_participant_counted_stays_in_the_totals_after_he_leaves(sfu: SFU) -> None:
    room = sfu.room("totals", RoomOptions(last_n=1))
    red, blue = WebRtcClient("red", 440, "red"), WebRtcClient("blue", 880, "blue")
    try:
        leaving = await red.join(room)
        await blue.join(room)
        await red.accept_slots()
        await blue.accept_slots()
        await until(lambda: red.colours_seen() == {"blue"} and blue.colours_seen() == {"red"}, 8, "both pictures")
        before = room.media_counters()
        assert before.video_packets_out > 0 and before.video_packets_in > 0 and before.audio_packets_in > 0
        await leaving.close()
        after = room.media_counters()  # no floor here: what the leg counted went to the room's retired totals
        for name in (
            "video_packets_out",
            "video_bytes_out",
            "video_packets_in",
            "audio_packets_in",
            "audio_packets_out",
        ):
            assert getattr(after, name) >= getattr(before, name), name
        summary = leaving.quality.summary()
        assert summary["video_out"]["packets"] > 0 and summary["video_in"]["resolution"] == "160x120"
        await sfu.close_room("totals")
        assert sfu.media_counters().video_packets_out >= after.video_packets_out
        assert sfu.media_counters().mixing_seconds > 0
    finally:
        await red.close()
        await blue.close()
